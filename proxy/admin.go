package proxy

import (
	"log/slog"
	"net/http"
	"net/http/pprof"

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
	Cache  AnswerCache
	Logger *slog.Logger
}

// Admin returns the admin listener's handler: /metrics, /healthz,
// /readyz, DELETE /cache/customers/{id}, and Go's profiler under
// /debug/pprof/. It must never be reachable through the ingress.
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
	mux.HandleFunc("DELETE /cache/customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !ValidID(id) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(errorBody(http.StatusBadRequest, errInvalidID.reason))
			return
		}
		if !o.Cache.Delete(r.Context(), id) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write(errorBody(http.StatusNotFound, "The id is not cached."))
			return
		}
		o.Logger.Info("cache entry evicted by operator", "customer_id", id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("GET /openapi.yaml", openapi.Handler())
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	return mux
}

func writeAdmin(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text + "\n"))
}
