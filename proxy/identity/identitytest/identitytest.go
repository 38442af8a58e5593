// Package identitytest provides what tests of token authentication need:
// a real OIDC issuer on a loopback port serving discovery and a key set,
// generated signing keys, and tokens of the shape the Kubernetes API
// server issues for projected service-account tokens.
package identitytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Audience is the gateway's default audience.
const Audience = "bluetape-gateway"

// The private keys are generated once per test binary: RSA generation is
// slow under -race on a busy machine.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func keys() {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

// RSAKey returns a 2048-bit RSA key, the same for the whole test binary.
func RSAKey() *rsa.PrivateKey { keys(); return rsaKey }

// RSAKey2 returns another 2048-bit RSA key, distinct from RSAKey.
func RSAKey2() *rsa.PrivateKey { keys(); return rsaKey2 }

// ECKey returns a P-256 key, the same for the whole test binary.
func ECKey() *ecdsa.PrivateKey { keys(); return ecKey }

// Key is a private key with the key id it is published under and the
// algorithm it signs with.
type Key struct {
	ID     string
	Signer crypto.Signer
	Alg    jose.SignatureAlgorithm
}

// RSA is RSAKey published as "rsa-1" for RS256.
func RSA() Key { return Key{ID: "rsa-1", Signer: RSAKey(), Alg: jose.RS256} }

// RSA2 is RSAKey2 published as "rsa-2" for RS256: a rotated key.
func RSA2() Key { return Key{ID: "rsa-2", Signer: RSAKey2(), Alg: jose.RS256} }

// EC is ECKey published as "ec-1" for ES256.
func EC() Key { return Key{ID: "ec-1", Signer: ECKey(), Alg: jose.ES256} }

// Issuer is a real OIDC issuer on a loopback port: it serves
// /.well-known/openid-configuration and its key set at /openid/v1/jwks,
// as the Kubernetes API server does, and records the requests.
type Issuer struct {
	// Server is the issuer's server; URL is its base URL, the issuer.
	Server *httptest.Server
	URL    string

	mu         sync.Mutex
	published  []Key
	down       bool
	authHeader []string

	discoveries atomic.Int64
	keyFetches  atomic.Int64
}

// NewIssuer starts an issuer on plain HTTP publishing keys; it is closed
// when the test ends.
func NewIssuer(t testing.TB, keys ...Key) *Issuer { return newIssuer(t, false, keys) }

// NewTLSIssuer starts an issuer on HTTPS with httptest's certificate
// (Server.Certificate); it is closed when the test ends.
func NewTLSIssuer(t testing.TB, keys ...Key) *Issuer { return newIssuer(t, true, keys) }

func newIssuer(t testing.TB, tlsServer bool, keys []Key) *Issuer {
	t.Helper()
	is := &Issuer{published: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.discoveries.Add(1)
		if !is.record(r) {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/openid/v1/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.keyFetches.Add(1)
		if !is.record(r) {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.published {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"})
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(set)
	})
	// The URL is set before the server starts: the handlers read it.
	is.Server = httptest.NewUnstartedServer(mux)
	if tlsServer {
		is.URL = "https://" + is.Server.Listener.Addr().String()
		is.Server.StartTLS()
	} else {
		is.URL = "http://" + is.Server.Listener.Addr().String()
		is.Server.Start()
	}
	if is.URL != is.Server.URL {
		t.Fatalf("issuer URL %s; server URL %s", is.URL, is.Server.URL)
	}
	t.Cleanup(is.Server.Close)
	return is
}

// record notes the request's Authorization header and reports whether the
// issuer is up.
func (is *Issuer) record(r *http.Request) bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.authHeader = append(is.authHeader, r.Header.Get("Authorization"))
	return !is.down
}

// SetDown makes the issuer answer 503 to every request while down is true.
func (is *Issuer) SetDown(down bool) {
	is.mu.Lock()
	is.down = down
	is.mu.Unlock()
}

// Publish replaces the published key set.
func (is *Issuer) Publish(keys ...Key) {
	is.mu.Lock()
	is.published = keys
	is.mu.Unlock()
}

// AuthHeaders returns the Authorization header of every request so far,
// in order ("" for none).
func (is *Issuer) AuthHeaders() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]string(nil), is.authHeader...)
}

// Discoveries and KeyFetches count the requests for the discovery
// document and for the key set, answered or not.
func (is *Issuer) Discoveries() int64 { return is.discoveries.Load() }
func (is *Issuer) KeyFetches() int64  { return is.keyFetches.Load() }

// Claims is the claim shape the Kubernetes API server issues for a
// projected service-account token.
type Claims struct {
	jwt.Claims
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		Pod struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// ServiceAccountClaims returns the claims of a token of issuer iss for the
// service account name in namespace, for Audience, issued at now and valid
// for an hour.
func ServiceAccountClaims(iss, namespace, name string, now time.Time) Claims {
	var c Claims
	c.Issuer = iss
	c.Subject = "system:serviceaccount:" + namespace + ":" + name
	c.Audience = jwt.Audience{Audience}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now)
	c.Expiry = jwt.NewNumericDate(now.Add(time.Hour))
	c.ID = "5a1f3c0e-6b2d-4a8e-9f7c-1d2e3f4a5b6c"
	c.Kubernetes.Namespace = namespace
	c.Kubernetes.ServiceAccount.Name = name
	c.Kubernetes.ServiceAccount.UID = "0f4c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a"
	c.Kubernetes.Pod.Name = name + "-7c9d8f6b5-x2k4q"
	c.Kubernetes.Pod.UID = "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"
	return c
}

// Sign returns claims as a compact JWS signed by k, with k's key id.
func Sign(t testing.TB, k Key, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Signer},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.ID))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Token returns a token of is for the service account name in namespace,
// signed by k, issued at now and valid for an hour.
func (is *Issuer) Token(t testing.TB, k Key, namespace, name string, now time.Time) string {
	t.Helper()
	return Sign(t, k, ServiceAccountClaims(is.URL, namespace, name, now))
}
