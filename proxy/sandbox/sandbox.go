// Package sandbox is a stand-in for BlueTape's signup endpoint, for local
// development only. It checks the credential headers as BlueTape does and
// answers stable signup URLs, with a few ids reserved for error answers.
package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bluetape/bluetape-gateway/config"
)

// The sandbox's credentials. They open nothing but the sandbox.
const (
	Key       = "sandbox-key"
	AccountID = "sandbox-account"
)

// Ids with fixed answers, named in the README.
const (
	NotFoundID   = "unknown-customer" // 404, as does any id starting "missing-"
	BadRequestID = "bad-request"      // 400
	FailingID    = "upstream-error"   // 500
)

// URL returns the signup URL the sandbox answers for id: stable, and
// derived from id so that different ids get different URLs.
func URL(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "https://www.bluetape.com/signup?id=" + hex.EncodeToString(sum[:8])
}

// Handler serves GET /integration/customer/{id}/signup under prefix
// (BlueTape's base path, such as /genericBthubService), expecting key and
// accountID in the credential headers.
func Handler(prefix, key, accountID string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/integration/customer/{id}/signup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !oneHeader(r, "X-BlueTape-Key", key) || !oneHeader(r, "X-Integration-AccountId", accountID) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code": "401", "reason": "Unauthorized."}`))
			return
		}
		id := r.PathValue("id")
		switch {
		case id == NotFoundID || strings.HasPrefix(id, "missing-"):
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code": "404", "reason": "Customer not found."}`))
		case id == BadRequestID:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code": "400", "reason": "Invalid customer id."}`))
		case id == FailingID:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"code": "500", "reason": "Unexpected error."}`))
		default:
			_, _ = w.Write([]byte(`{"signUpUrl": "` + URL(id) + `"}`))
		}
	})
	return mux
}

func oneHeader(r *http.Request, name, want string) bool {
	v := r.Header.Values(name)
	return len(v) == 1 && subtle.ConstantTimeCompare([]byte(v[0]), []byte(want)) == 1
}

// Sandbox is the stand-in BlueTape serving on a loopback port.
type Sandbox struct {
	// BaseURL is the sandbox's base URL, BlueTape's base path included.
	BaseURL string

	srv *http.Server
}

// Start serves the sandbox on a free loopback port under BlueTape's base
// path until Close. It is tied to no context on purpose: the gateway calls
// it until its last request is answered, the drain after a signal
// included, so it is closed after the gateway's serve has returned.
func Start() (*Sandbox, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the sandbox: %w", err)
	}
	const prefix = "/genericBthubService"
	srv := &http.Server{Handler: Handler(prefix, Key, AccountID), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Sandbox{BaseURL: "http://" + ln.Addr().String() + prefix, srv: srv}, nil
}

// Close stops the sandbox and its connections.
func (s *Sandbox) Close() error { return s.srv.Close() }

// Env returns getenv with the sandbox's base URL and credentials in place
// of the environment's, whatever the environment says.
func (s *Sandbox) Env(getenv func(string) string) func(string) string {
	return func(name string) string {
		switch name {
		case config.EnvBaseURL:
			return s.BaseURL
		case config.EnvAPIKey:
			return Key
		case config.EnvAccountID:
			return AccountID
		case config.EnvAPIKeyFile, config.EnvAccountIDFile:
			return ""
		}
		return getenv(name)
	}
}

// The sandbox's listen addresses when none is set: loopback only, since
// the sandbox is for one laptop and the admin listener serves pprof.
const (
	APIAddr   = "127.0.0.1:8080"
	AdminAddr = "127.0.0.1:9090"
)

// Listeners keeps the gateway on loopback: a listen address that cfg
// does not set (in the YAML file or the environment) becomes APIAddr or
// AdminAddr. Port 9090 is Prometheus's own default, so when AdminAddr
// cannot be listened on, the admin listener takes a free loopback port
// instead. An address that is set is left as it is. Listeners returns
// the log attributes that say where the gateway will listen.
func Listeners(cfg *config.Config) []any {
	if !cfg.IsSet(config.EnvListenAddr) {
		cfg.ListenAddr = APIAddr
	}
	if cfg.IsSet(config.EnvAdminAddr) {
		return []any{"api", cfg.ListenAddr, "admin", cfg.AdminAddr}
	}
	cfg.AdminAddr = AdminAddr
	if cfg.ListenAddr != AdminAddr && free(AdminAddr) {
		return []any{"api", cfg.ListenAddr, "admin", cfg.AdminAddr}
	}
	addr, err := freePort()
	if err != nil {
		// Listening on AdminAddr then fails with a message naming it.
		return []any{"api", cfg.ListenAddr, "admin", cfg.AdminAddr}
	}
	cfg.AdminAddr = addr
	return []any{"api", cfg.ListenAddr, "admin", cfg.AdminAddr,
		"admin_moved", AdminAddr + " is taken (9090 is Prometheus's default port): the admin listener uses a free port"}
}

// free reports whether addr can be listened on now.
func free(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// freePort returns a loopback address whose port the system has just
// handed out as free.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
