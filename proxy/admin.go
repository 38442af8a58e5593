package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bluetape/bluetape-gateway/proxy/openapi"
)

// AdminOptions configures the admin handler.
type AdminOptions struct {
	// Gatherer is the registry served on /metrics.
	Gatherer prometheus.Gatherer
	// Ready reports whether /readyz answers 200.
	Ready func() bool
	// Cache is the cache operators may evict from.
	Cache AnswerCache
	// Token, if not nil, returns the bearer token that the admin actions
	// (DELETE /cache/customers/{id} and /debug/pprof/) require; it is
	// called on every such request, so a rotated token takes effect at
	// once. When nil, those routes are not served.
	Token  func() string
	Logger *slog.Logger
}

// maxProfileSeconds bounds the seconds parameter of the profiler's
// endpoints, below the admin server's write timeout.
const maxProfileSeconds = 25

// Admin returns the admin listener's handler: /metrics, /healthz,
// /readyz and /openapi.yaml, open; and, with a token, the admin actions
// DELETE /cache/customers/{id} and Go's profiler under /debug/pprof/. It
// must never be reachable through the ingress.
func Admin(o AdminOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		Registry:          nil,
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelError),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeAdmin(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready() {
			writeAdmin(w, http.StatusOK, "ready")
			return
		}
		writeAdmin(w, http.StatusServiceUnavailable, "not ready")
	})
	mux.Handle("GET /openapi.yaml", openapi.Handler())
	if o.Token == nil {
		return mux
	}
	action := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, requireToken(o.Token, h))
	}
	action("DELETE /cache/customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !ValidID(id) {
			writeAdminError(w, http.StatusBadRequest, errInvalidID.reason)
			return
		}
		if !o.Cache.Delete(r.Context(), id) {
			writeAdminError(w, http.StatusNotFound, "The id is not cached.")
			return
		}
		o.Logger.Info("cache entry evicted by operator", "customer_id", id)
		w.WriteHeader(http.StatusNoContent)
	})
	action("GET /debug/pprof/", boundSeconds(pprof.Index))
	action("GET /debug/pprof/profile", boundSeconds(pprof.Profile))
	action("GET /debug/pprof/trace", boundSeconds(pprof.Trace))
	action("GET /debug/pprof/symbol", pprof.Symbol)
	return mux
}

// requireToken serves h only to requests that carry
// Authorization: Bearer <token>; others get 401. The tokens are compared
// through their SHA-256, in constant time.
func requireToken(token func() string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := token()
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || want == "" || !sameToken(got, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bluetape-gateway-admin"`)
			writeAdminError(w, http.StatusUnauthorized, "A valid admin bearer token is required.")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func sameToken(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// boundSeconds refuses a seconds parameter that is not a whole number of
// seconds from 1 to maxProfileSeconds.
func boundSeconds(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("seconds"); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxProfileSeconds {
				writeAdminError(w, http.StatusBadRequest,
					"seconds must be a whole number from 1 to "+strconv.Itoa(maxProfileSeconds)+".")
				return
			}
		}
		h(w, r)
	}
}

// writeAdminError writes the contract's error body on the admin listener.
func writeAdminError(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(status, reason))
}

func writeAdmin(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text + "\n"))
}
