// Package sandbox is a stand-in for BlueTape's signup endpoint, for local
// development only. It checks the credential headers as BlueTape does and
// answers stable signup URLs, with a few ids reserved for error answers.
package sandbox

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
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

// Start serves the sandbox on a free loopback port under BlueTape's base
// path until ctx is done, and returns its base URL.
func Start(ctx context.Context) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("starting the sandbox: %w", err)
	}
	const prefix = "/genericBthubService"
	srv := &http.Server{Handler: Handler(prefix, Key, AccountID), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return "http://" + ln.Addr().String() + prefix, nil
}
