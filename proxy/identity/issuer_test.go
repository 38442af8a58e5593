package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const audience = "bluetape-gateway"

// Keys are generated once per test binary: RSA generation is slow under
// -race on a busy machine.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
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

// signingKey is a private key with the key id it is published under.
type signingKey struct {
	kid string
	key crypto.Signer
	alg jose.SignatureAlgorithm
}

// issuer is a real OIDC issuer on a loopback port: it serves discovery
// and a key set, and counts and records the requests.
type issuer struct {
	srv *httptest.Server
	url string

	mu         sync.Mutex
	published  []signingKey
	down       bool
	authHeader []string // the Authorization header of every request, in order

	discoveries atomic.Int64
	keyFetches  atomic.Int64
}

func newIssuer(t testing.TB, tlsServer bool, keys ...signingKey) *issuer {
	t.Helper()
	is := &issuer{published: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.discoveries.Add(1)
		if !is.record(r) {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.url,
			"jwks_uri":                              is.url + "/openid/v1/jwks",
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
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		json.NewEncoder(w).Encode(set)
	})
	if tlsServer {
		is.srv = httptest.NewTLSServer(mux)
	} else {
		is.srv = httptest.NewServer(mux)
	}
	is.url = is.srv.URL
	t.Cleanup(is.srv.Close)
	return is
}

// record notes the request's Authorization header and reports whether the
// issuer is up.
func (is *issuer) record(r *http.Request) bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.authHeader = append(is.authHeader, r.Header.Get("Authorization"))
	return !is.down
}

func (is *issuer) setDown(down bool) {
	is.mu.Lock()
	is.down = down
	is.mu.Unlock()
}

func (is *issuer) publish(keys ...signingKey) {
	is.mu.Lock()
	is.published = keys
	is.mu.Unlock()
}

func (is *issuer) authHeaders() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]string(nil), is.authHeader...)
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_900_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// k8sClaims is the claim shape the Kubernetes API server issues for a
// projected service-account token.
type k8sClaims struct {
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

// podClaims returns the claims of billing/billing-api's token issued at
// now, valid for an hour.
func podClaims(iss string, now time.Time) k8sClaims {
	var c k8sClaims
	c.Issuer = iss
	c.Subject = "system:serviceaccount:billing:billing-api"
	c.Audience = jwt.Audience{audience}
	c.IssuedAt = jwt.NewNumericDate(now)
	c.NotBefore = jwt.NewNumericDate(now)
	c.Expiry = jwt.NewNumericDate(now.Add(time.Hour))
	c.ID = "5a1f3c0e-6b2d-4a8e-9f7c-1d2e3f4a5b6c"
	c.Kubernetes.Namespace = "billing"
	c.Kubernetes.ServiceAccount.Name = "billing-api"
	c.Kubernetes.ServiceAccount.UID = "0f4c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a"
	c.Kubernetes.Pod.Name = "billing-api-7c9d8f6b5-x2k4q"
	c.Kubernetes.Pod.UID = "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"
	return c
}

// sign returns claims as a compact JWS signed by k.
func sign(t testing.TB, k signingKey, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newVerifier returns a Verifier for is with the clock c.
func newVerifier(t testing.TB, is *issuer, c *clock, o Options) *Verifier {
	t.Helper()
	o.Issuer = is.url
	if o.Audience == "" {
		o.Audience = audience
	}
	if o.Now == nil {
		o.Now = c.Now
	}
	if o.HTTPClient == nil && o.CAFile == "" {
		o.HTTPClient = is.srv.Client()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// load fetches the key set once, as Run's first attempt does.
func load(v *Verifier) {
	v.fetchMu.Lock()
	v.fetchLocked(context.Background())
	v.fetchMu.Unlock()
}
