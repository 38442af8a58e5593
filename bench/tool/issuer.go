package main

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
)

const issuerKeyID = "bench-rsa-1"

// issuerCommand is a stand-in for the Kubernetes API server as an OIDC
// issuer, for the gateway variant whose callers send a service-account JWT.
//
// At start it generates an RSA-2048 key and writes one token to the file
// given by -token: signed RS256, with the claims of a projected
// service-account token for system:serviceaccount:bench:bench-caller and the
// audience bluetape-gateway, valid for an hour. It then serves the discovery
// document at /.well-known/openid-configuration (issuer: its own base URL)
// and the key set at /keys.
func issuerCommand(fs *flag.FlagSet) func() error {
	addr := fs.String("addr", "127.0.0.1:8082", "listen address; the issuer URL is http://<addr>")
	tokenFile := fs.String("token", "", "file the token is written to (required)")
	audience := fs.String("audience", "bluetape-gateway", "the token's aud")
	return func() error {
		if *tokenFile == "" {
			return errors.New("-token is required")
		}
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return fmt.Errorf("generating the key: %w", err)
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		base := "http://" + ln.Addr().String()

		tok, err := sign(key, serviceAccountClaims(base, *audience, "bench", "bench-caller", time.Now()))
		if err != nil {
			return fmt.Errorf("signing: %w", err)
		}
		if err := os.WriteFile(*tokenFile, []byte(tok), 0o600); err != nil {
			return fmt.Errorf("writing the token: %w", err)
		}

		keys := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: key.Public(), KeyID: issuerKeyID, Algorithm: string(jose.RS256), Use: "sig"},
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
		return serve(ln, mux)
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
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), issuerKeyID))
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(c).Serialize()
}
