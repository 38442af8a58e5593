package identity

import (
	"context"
	"testing"
)

// BenchmarkVerifyCached verifies a token that was verified before: a hash
// and a map lookup.
func BenchmarkVerifyCached(b *testing.B) {
	c, is, v := loadedVerifier(b, rsaSigner(b))
	tok := sign(b, rsaSigner(b), podClaims(is.URL, c.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncached verifies a token from scratch each time:
// parsing, the signature check and the claims.
func BenchmarkVerifyUncached(b *testing.B) {
	for _, k := range []signingKey{rsaSigner(b), ecSigner(b)} {
		b.Run(string(k.Alg), func(b *testing.B) {
			c := newClock()
			is := newIssuer(b, false, k)
			v := newVerifier(b, is, c, Options{})
			load(v)
			tok := sign(b, k, podClaims(is.URL, c.Now()))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.verify(ctx, tok, c.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIsJWT tells a service-account token from a static token, as
// every authenticated request does.
func BenchmarkIsJWT(b *testing.B) {
	tok := sign(b, rsaSigner(b), podClaims("https://kubernetes.default.svc.cluster.local", newClock().Now()))
	b.ReportAllocs()
	for b.Loop() {
		if !IsJWT(tok) {
			b.Fatal("not a JWT")
		}
	}
}
