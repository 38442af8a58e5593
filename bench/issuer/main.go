// Command issuer is a stand-in for the Kubernetes API server as an OIDC
// issuer, used by the load benchmark (bench/run.sh) for the gateway variant
// whose callers send a service-account JWT.
//
// At start it generates an RSA-2048 key and writes one token to the file
// given by -token: signed RS256, with the claims of a projected
// service-account token for system:serviceaccount:bench:bench-caller and the
// audience bluetape-gateway, valid for an hour. It then serves the discovery
// document at /.well-known/openid-configuration (issuer: its own base URL)
// and the key set at /keys.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
)

const keyID = "bench-rsa-1"

func main() {
	port := flag.Int("port", 8082, "port to listen on at 127.0.0.1")
	tokenFile := flag.String("token", "", "file the token is written to (required)")
	audience := flag.String("audience", "bluetape-gateway", "the token's aud")
	flag.Parse()
	if *tokenFile == "" {
		log.Fatal("-token is required")
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		log.Fatalf("generating the key: %v", err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatalf("listening: %v", err)
	}
	base := "http://" + ln.Addr().String()

	tok, err := sign(key, serviceAccountClaims(base, *audience, "bench", "bench-caller", time.Now()))
	if err != nil {
		log.Fatalf("signing: %v", err)
	}
	if err := os.WriteFile(*tokenFile, []byte(tok), 0o600); err != nil {
		log.Fatalf("writing the token: %v", err)
	}

	keys := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: key.Public(), KeyID: keyID, Algorithm: string(jose.RS256), Use: "sig"},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "application/json", map[string]any{
			"issuer":                                base,
			"jwks_uri":                              base + "/keys",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "application/jwk-set+json", keys)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serving: %v", err)
	}
}

// serviceAccountClaims returns the claims the API server puts in a token
// for the service account name in namespace, issued at now, valid for an
// hour: the tests' shape (identitytest), with this run's audience and a
// fresh token id.
func serviceAccountClaims(iss, audience, namespace, name string, now time.Time) identitytest.Claims {
	c := identitytest.ServiceAccountClaims(iss, namespace, name, now)
	c.Audience = jwt.Audience{audience}
	c.ID = rand.Text()
	return c
}

// sign returns c as a compact JWS signed RS256 by key, with the key id.
func sign(key *rsa.PrivateKey, c identitytest.Claims) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), keyID))
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(c).Serialize()
}

func writeJSON(w http.ResponseWriter, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	_ = json.NewEncoder(w).Encode(v)
}
