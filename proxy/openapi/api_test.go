package openapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/openapi"
)

// callerToken is the static token of the one caller in the callers file.
const callerToken = "caller-token-for-the-openapi-tests"

// row is one request whose answer must conform to the document.
type row struct {
	name    string
	gateway string // "open", "auth", "limited" or "jwt"
	method  string
	id      string
	header  map[string]string
	bearer  func() string // if not nil, the bearer token, known once the gateways run
	before  int           // requests for the same id sent first, answers ignored
	status  int
	check   func(*http.Response) error // beyond the document, if not nil
}

// apiRows are the rows of the contract's API table, each checked against
// the document.
var apiRows = []row{
	{name: "found", gateway: "open", method: "GET", id: "found-1", status: 200},
	{name: "found from the cache", gateway: "open", method: "GET", id: "found-2", before: 1, status: 200,
		check: headerIs("X-Cache", "HIT")},
	{name: "found, authenticated caller", gateway: "auth", method: "GET", id: "found-3",
		header: map[string]string{"Authorization": "Bearer " + callerToken}, status: 200},
	{name: "invalid id character", gateway: "open", method: "GET", id: "bad!id", status: 400},
	{name: "id too long", gateway: "open", method: "GET", id: strings.Repeat("x", 129), status: 400},
	{name: "no bearer token", gateway: "auth", method: "GET", id: "found-4", status: 401},
	{name: "unknown bearer token", gateway: "auth", method: "GET", id: "found-5",
		header: map[string]string{"Authorization": "Bearer not-a-registered-token"}, status: 401},
	{name: "upstream 404", gateway: "open", method: "GET", id: "missing", status: 404},
	{name: "upstream 400", gateway: "open", method: "GET", id: "rejected", status: 400},
	{name: "caller over its rate", gateway: "limited", method: "GET", id: "found-6", before: 1, status: 429},
	{name: "upstream 401", gateway: "open", method: "GET", id: "credentials-refused", status: 502},
	{name: "upstream 500", gateway: "open", method: "GET", id: "broken", status: 502},
	{name: "upstream garbage", gateway: "open", method: "GET", id: "garbage", status: 502},
	{name: "upstream 429", gateway: "open", method: "GET", id: "throttled", status: 503},
	{name: "upstream too slow", gateway: "open", method: "GET", id: "slow", status: 504},
	{name: "POST", gateway: "open", method: "POST", id: "found-9", status: 405, check: headerIs("Allow", "GET")},
	{name: "DELETE", gateway: "open", method: "DELETE", id: "found-9", status: 405, check: headerIs("Allow", "GET")},
	{name: "OPTIONS", gateway: "open", method: "OPTIONS", id: "found-9", status: 405, check: headerIs("Allow", "GET")},
	{name: "subject not in the callers file", gateway: "jwt", method: "GET", id: "found-7",
		bearer: func() string { return jwtUnlistedSubject }, status: 403},
	{name: "refused token names invalid_token", gateway: "auth", method: "GET", id: "found-8",
		header: map[string]string{"Authorization": "Bearer not-a-registered-token"}, status: 401,
		check: headerIs("WWW-Authenticate", `Bearer error="invalid_token"`)},
}

func headerIs(name, want string) func(*http.Response) error {
	return func(r *http.Response) error {
		if got := r.Header.Get(name); got != want {
			return fmt.Errorf("%s %q; want %q", name, got, want)
		}
		return nil
	}
}

// jwtUnlistedSubject is set by startGateways: a valid token of the fake
// issuer whose subject the callers file does not list.
var jwtUnlistedSubject string

// upstream is a fake BlueTape: the id chooses the answer.
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /integration/customer/{id}/signup", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(id, "found-"):
			fmt.Fprintf(w, `{"signUpUrl": "https://www.bluetape.com/signup?id=%s"}`, id)
		case id == "missing":
			w.WriteHeader(404)
			io.WriteString(w, `{"code": "404", "reason": "Customer not found."}`)
		case id == "rejected":
			w.WriteHeader(400)
			io.WriteString(w, `{"code": "400", "reason": "Invalid customer id."}`)
		case id == "credentials-refused":
			w.WriteHeader(401)
			io.WriteString(w, `{"code": "401", "reason": "Unauthorized."}`)
		case id == "throttled":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			io.WriteString(w, `{"code": "429", "reason": "Too many requests."}`)
		case id == "garbage":
			io.WriteString(w, `<html>not json`)
		case id == "slow":
			select { // until the gateway gives up, or the test ends
			case <-r.Context().Done():
			case <-release:
			}
		default:
			w.WriteHeader(500)
			io.WriteString(w, `{"code": "500", "reason": "Unexpected error."}`)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv
}

// issuer is a fake OIDC issuer with one RSA key; it returns its URL and
// a signed token for sub.
func issuer(t *testing.T, sub string) (string, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "k1"})
	claims, _ := json.Marshal(map[string]any{"iss": srv.URL, "sub": sub, "aud": []string{"bluetape-gateway"},
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	signing := b64(header) + "." + b64(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, signing + "." + b64(sig)
}

// startGateways starts the gateway processes the rows need, in front of
// one fake upstream, and returns their API base URLs by name.
func startGateways(t *testing.T) map[string]*gatewaytest.Gateway {
	t.Helper()
	up := upstream(t)
	base := []string{"BLUETAPE_BASE_URL=" + up.URL, "BLUETAPE_API_KEY=test-key", "BLUETAPE_ACCOUNT_ID=test-account",
		"GATEWAY_UPSTREAM_TIMEOUT=500ms"}
	sum := sha256.Sum256([]byte(callerToken))
	callers := filepath.Join(t.TempDir(), "callers.yaml")
	file := fmt.Sprintf("callers:\n  - name: test-caller\n    token_sha256: %s\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(callers, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	iss, token := issuer(t, "system:serviceaccount:elsewhere:unlisted")
	jwtUnlistedSubject = token
	return map[string]*gatewaytest.Gateway{
		"open":    gatewaytest.Built.Start(t, base),
		"auth":    gatewaytest.Built.Start(t, append(base, "GATEWAY_CALLERS_FILE="+callers)),
		"limited": gatewaytest.Built.Start(t, append(base, "GATEWAY_RATE_LIMIT=0.001", "GATEWAY_RATE_BURST=1")),
		"jwt":     gatewaytest.Built.Start(t, append(base, "GATEWAY_CALLERS_FILE="+callers, "GATEWAY_JWT_ISSUER="+iss)),
	}
}

// validator checks answers against the document.
type validator struct {
	doc    *openapi3.T
	router routers.Router
}

// newValidator loads the document.
func newValidator(t *testing.T) *validator {
	t.Helper()
	doc := loadDocument(t)
	doc.Servers = nil // match any host: the gateways listen on free ports
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &validator{doc: doc, router: router}
}

var client = &http.Client{Timeout: 20 * time.Second}

// do sends the row's request and returns the answer with its body read.
func do(t *testing.T, gw *gatewaytest.Gateway, r row) (*http.Request, *http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), r.method, gw.API+"/customers/"+r.id+"/signup", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.bearer != nil {
		req.Header.Set("Authorization", "Bearer "+r.bearer())
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return req, resp, body
}

// conform returns why the answer does not conform to the document and to
// the row, or nil.
func (v *validator) conform(req *http.Request, resp *http.Response, body []byte, r row) error {
	if resp.StatusCode != r.status {
		return fmt.Errorf("status %d; want %d (body %s)", resp.StatusCode, r.status, body)
	}
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("the document has no operation for %s %s: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("the answer does not conform to the document: %v\nheaders %v\nbody %s", err, resp.Header, body)
	}
	if r.check != nil {
		return r.check(resp)
	}
	return nil
}

// TestAnswersConformToDocument sends one request per row of the API table
// to real gateway processes and validates each answer (status, headers,
// body) against the document.
func TestAnswersConformToDocument(t *testing.T) {
	gws := startGateways(t)
	v := newValidator(t)
	for _, r := range apiRows {
		t.Run(r.name, func(t *testing.T) {
			for range r.before {
				do(t, gws[r.gateway], r)
			}
			req, resp, body := do(t, gws[r.gateway], r)
			if err := v.conform(req, resp, body, r); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAdminServesDocument checks GET /openapi.yaml on the admin listener.
func TestAdminServesDocument(t *testing.T) {
	gw := gatewaytest.Built.Start(t, []string{"BLUETAPE_BASE_URL=http://127.0.0.1:1", "BLUETAPE_API_KEY=k", "BLUETAPE_ACCOUNT_ID=a"})
	resp, err := client.Get(gw.Admin + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d; want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q; want application/yaml", ct)
	}
	if !bytes.Equal(body, openapi.Document()) {
		t.Error("GET /openapi.yaml is not the embedded document")
	}
	api, err := client.Get(gw.API + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	api.Body.Close()
	if api.StatusCode != http.StatusNotFound {
		t.Errorf("the API listener answers /openapi.yaml with %d; want 404: only the admin listener serves it", api.StatusCode)
	}
}
