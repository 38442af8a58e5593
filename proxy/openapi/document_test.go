package openapi_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/bluetape/bluetape-gateway/proxy/openapi"
)

// loadDocument parses and validates the embedded document.
func loadDocument(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatalf("loading the document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	return doc
}

// TestDocumentIsValid validates the document as OpenAPI 3.1 and checks
// what the contract fixes in it.
func TestDocumentIsValid(t *testing.T) {
	doc := loadDocument(t)
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q; want 3.1.0", doc.OpenAPI)
	}
	item := doc.Paths.Value("/customers/{id}/signup")
	if item == nil {
		t.Fatal("no path /customers/{id}/signup")
	}
	get := item.Get
	if get == nil {
		t.Fatal("no GET operation")
	}
	var statuses []string
	for code := range get.Responses.Map() {
		statuses = append(statuses, code)
	}
	slices.Sort(statuses)
	if want := []string{"200", "400", "401", "403", "404", "429", "502", "503", "504"}; !slices.Equal(statuses, want) {
		t.Errorf("GET statuses %q; want %q", statuses, want)
	}
	for method, op := range item.Operations() {
		if method == "GET" {
			continue
		}
		if op.Responses.Len() != 1 || op.Responses.Status(405) == nil {
			t.Errorf("%s: responses other than 405", method)
		}
	}
	if n := len(item.Operations()); n != 7 {
		t.Errorf("%d operations; want GET and the six methods answered 405", n)
	}
	for _, name := range []string{"callerToken", "serviceAccountToken"} {
		s := doc.Components.SecuritySchemes[name]
		if s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
			t.Errorf("security scheme %s: want an http bearer scheme", name)
		}
	}
}

// TestIDParameter checks the id parameter's schema against ids the
// gateway accepts and refuses (proxy.ValidID's rule).
func TestIDParameter(t *testing.T) {
	doc := loadDocument(t)
	schema := doc.Components.Parameters["CustomerId"].Value.Schema.Value
	cases := map[string]bool{
		"97bee7a043b58084":       true,
		"a":                      true,
		"A-Z_a.z~0":              true,
		"...":                    true,
		".":                      false,
		"..":                     false,
		"":                       false,
		"bad!id":                 false,
		"with space":             false,
		"slash/inside":           false,
		"é":                      false,
		strings.Repeat("x", 128): true,
		strings.Repeat("x", 129): false,
	}
	for id, ok := range cases {
		err := schema.VisitJSON(id, openapi3.EnableJSONSchema2020())
		if (err == nil) != ok {
			t.Errorf("id %q: valid=%v; want %v (%v)", id, err == nil, ok, err)
		}
	}
}

func TestDocumentIsACopy(t *testing.T) {
	a := openapi.Document()
	a[0] = 'X'
	if b := openapi.Document(); b[0] == 'X' {
		t.Error("Document returned the embedded bytes, not a copy")
	}
}

func TestHandler(t *testing.T) {
	rec := httptest.NewRecorder()
	openapi.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("status %d; want 200", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/yaml" {
		t.Errorf("Content-Type %q; want application/yaml", got)
	}
	if !bytes.Equal(rec.Body.Bytes(), openapi.Document()) {
		t.Error("the body is not the document")
	}
}
