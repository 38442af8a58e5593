// Package openapi holds the OpenAPI 3.1 document of the gateway's caller
// API, GET /customers/{id}/signup, embedded in the binary so that the
// admin listener can serve it at GET /openapi.yaml.
package openapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed openapi.yaml
var document []byte

// ContentType is the media type the document is served with.
const ContentType = "application/yaml"

// Document returns the OpenAPI document, as YAML. The slice is a copy: the
// caller may keep or change it.
func Document() []byte {
	return append([]byte(nil), document...)
}

// Handler returns a handler that serves the document with ContentType. It
// is safe to be called concurrently.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Length", strconv.Itoa(len(document)))
		_, _ = w.Write(document)
	})
}
