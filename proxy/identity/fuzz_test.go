package identity

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
)

// FuzzAuthorization feeds Authorization header values through the path
// the gateway takes: bearer parsing, the JWT shape test, then the
// Verifier. Nothing may panic, nothing made up may be accepted, and no
// error may quote the token.
func FuzzAuthorization(f *testing.F) {
	c, is, v := loadedVerifier(f, rsaSigner(f), ecSigner(f))
	good := sign(f, rsaSigner(f), podClaims(is.URL, c.Now()))
	parts := strings.Split(good, ".")
	for _, s := range []string{
		"Bearer " + good,
		"bearer " + good,
		"Bearer " + parts[0] + "." + parts[1] + ".",
		"Bearer " + parts[0] + "." + parts[1] + "." + parts[2] + "x",
		"Bearer " + parts[0] + ".e30." + parts[2],
		"Bearer eyJhbGciOiJub25lIn0.e30.",
		"Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
		"Bearer a.b.c", "Bearer a.b.c.d", "Bearer abc", "Bearer ..", "Basic dXNlcjpwYXNz", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		// No fetches: the issuer would see one per fuzz input otherwise.
		v.fetchMu.Lock()
		v.lastFetch = c.Now()
		v.fetchMu.Unlock()
		tok, ok := callers.BearerToken(header)
		if !ok || !IsJWT(tok) {
			return
		}
		id, err := v.Verify(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || strings.Contains(err.Error(), tok) {
				t.Fatalf("error %q", err)
			}
			return
		}
		if tok != good || id.Caller != "billing/billing-api" {
			t.Fatalf("accepted %q as %+v", tok, id)
		}
	})
}
