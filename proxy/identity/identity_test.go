package identity

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bluetape/bluetape-gateway/proxy/identity/identitytest"
)

func rsaSigner(testing.TB) signingKey { return identitytest.RSA() }

func ecSigner(testing.TB) signingKey { return identitytest.EC() }

func TestVerifyKubernetesToken(t *testing.T) {
	c, is, v := loadedVerifier(t, rsaSigner(t), ecSigner(t))
	for _, k := range []signingKey{rsaSigner(t), ecSigner(t)} {
		t.Run(string(k.Alg), func(t *testing.T) {
			id, err := v.Verify(context.Background(), sign(t, k, podClaims(is.URL, c.Now())))
			if err != nil {
				t.Fatal(err)
			}
			want := Identity{
				Subject: "system:serviceaccount:billing:billing-api",
				Caller:  "billing/billing-api",
				Expiry:  c.Now().Add(time.Hour),
			}
			if id != want {
				t.Errorf("got %+v; want %+v", id, want)
			}
		})
	}
}

// TestVerifyRefuses checks each way a token may be wrong, and the edges
// of the leeway that must still be accepted.
func TestVerifyRefuses(t *testing.T) {
	c := newClock()
	is := newIssuer(t, false, rsaSigner(t), ecSigner(t))
	now := c.Now()
	valid := func() k8sClaims { return podClaims(is.URL, now) }
	pubDER, err := x509.MarshalPKIXPublicKey(&identitytest.RSAKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, rsaSigner(t), valid())
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	jsonB64 := func(x any) string {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		return b64(b)
	}

	cases := map[string]struct {
		token string
		ok    bool
	}{
		"valid": {token: good, ok: true},
		"expired": {token: func() string {
			cl := podClaims(is.URL, now.Add(-2*time.Hour))
			return sign(t, rsaSigner(t), cl)
		}()},
		"expired beyond the leeway": {token: func() string {
			cl := valid()
			cl.Expiry = jwt.NewNumericDate(now.Add(-61 * time.Second))
			cl.IssuedAt = jwt.NewNumericDate(now.Add(-time.Hour))
			cl.NotBefore = cl.IssuedAt
			return sign(t, rsaSigner(t), cl)
		}()},
		"expired within the leeway": {ok: true, token: func() string {
			cl := valid()
			cl.Expiry = jwt.NewNumericDate(now.Add(-59 * time.Second))
			cl.IssuedAt = jwt.NewNumericDate(now.Add(-time.Hour))
			cl.NotBefore = cl.IssuedAt
			return sign(t, rsaSigner(t), cl)
		}()},
		"not valid yet beyond the leeway": {token: func() string {
			cl := valid()
			cl.NotBefore = jwt.NewNumericDate(now.Add(61 * time.Second))
			cl.IssuedAt = jwt.NewNumericDate(now)
			return sign(t, rsaSigner(t), cl)
		}()},
		"not valid yet within the leeway": {ok: true, token: func() string {
			cl := valid()
			cl.NotBefore = jwt.NewNumericDate(now.Add(59 * time.Second))
			cl.IssuedAt = jwt.NewNumericDate(now.Add(59 * time.Second))
			return sign(t, rsaSigner(t), cl)
		}()},
		"issued in the future": {token: func() string {
			cl := valid()
			cl.IssuedAt = jwt.NewNumericDate(now.Add(5 * time.Minute))
			return sign(t, rsaSigner(t), cl)
		}()},
		"no exp": {token: func() string {
			cl := valid()
			cl.Expiry = nil
			return sign(t, rsaSigner(t), cl)
		}()},
		"no sub": {token: func() string {
			cl := valid()
			cl.Subject = ""
			return sign(t, ecSigner(t), cl)
		}()},
		"wrong issuer": {token: func() string {
			cl := valid()
			cl.Issuer = is.URL + "/"
			return sign(t, rsaSigner(t), cl)
		}()},
		"wrong audience": {token: func() string {
			cl := valid()
			cl.Audience = jwt.Audience{"https://kubernetes.default.svc.cluster.local"}
			return sign(t, rsaSigner(t), cl)
		}()},
		"audience among others": {ok: true, token: func() string {
			cl := valid()
			cl.Audience = jwt.Audience{"vault", audience}
			return sign(t, ecSigner(t), cl)
		}()},
		"tampered payload": {token: func() string {
			cl := valid()
			cl.Subject = "system:serviceaccount:kube-system:admin"
			return parts[0] + "." + jsonB64(cl) + "." + parts[2]
		}()},
		"signature of another token": {token: parts[0] + "." + parts[1] + "." +
			strings.Split(sign(t, rsaSigner(t), podClaims(is.URL, now.Add(time.Second))), ".")[2]},
		"alg none": {token: jsonB64(map[string]string{"alg": "none", "kid": "rsa-1", "typ": "JWT"}) + "." +
			jsonB64(valid()) + "."},
		"alg none with a signature": {token: jsonB64(map[string]string{"alg": "none", "kid": "rsa-1"}) + "." +
			jsonB64(valid()) + "." + parts[2]},
		"HS256 with the public key as secret": {token: func() string {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER},
				(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), "rsa-1"))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Signed(s).Claims(valid()).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}()},
		"ES256 header over the RSA key's id": {token: sign(t, signingKey{ID: "rsa-1", Signer: identitytest.ECKey(), Alg: jose.ES256}, valid())},
		"RS384":                              {token: sign(t, signingKey{ID: "rsa-1", Signer: identitytest.RSAKey(), Alg: jose.RS384}, valid())},
		"PS256":                              {token: sign(t, signingKey{ID: "rsa-1", Signer: identitytest.RSAKey(), Alg: jose.PS256}, valid())},
		"signed by an unpublished key under a known id": {
			token: sign(t, signingKey{ID: "rsa-1", Signer: identitytest.RSAKey2(), Alg: jose.RS256}, valid())},
		"not a JWT":      {token: "9f86d081884c7d659a2feaa0c55ad015"},
		"two parts":      {token: parts[0] + "." + parts[1]},
		"padded base64":  {token: parts[0] + "=." + parts[1] + "." + parts[2]},
		"empty":          {token: ""},
		"JSON in a part": {token: `{"alg":"RS256"}.` + parts[1] + "." + parts[2]},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v := newVerifier(t, is, c, Options{})
			load(v)
			// Unknown key ids must not cause fetches in this test.
			v.lastFetch = now
			id, err := v.Verify(context.Background(), tc.token)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.Caller != "billing/billing-api" {
					t.Errorf("caller %q", id.Caller)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %+v", id)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v is not ErrInvalidToken", err)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error holds the token: %v", err)
			}
			if id != (Identity{}) {
				t.Errorf("identity %+v with the error", id)
			}
		})
	}
}

// TestRotation publishes a new key: a token signed with it is accepted
// after one fetch, and a second unknown key id within RefetchInterval
// causes no fetch.
func TestRotation(t *testing.T) {
	c := newClock()
	old := rsaSigner(t)
	is := newIssuer(t, false, old)
	v := newVerifier(t, is, c, Options{})
	load(v)
	if got := is.KeyFetches(); got != 1 {
		t.Fatalf("%d key-set fetches after load; want 1", got)
	}
	rotated := signingKey{ID: "rsa-2", Signer: identitytest.RSAKey2(), Alg: jose.RS256}
	is.Publish(old, rotated)

	if _, err := v.Verify(context.Background(), sign(t, rotated, podClaims(is.URL, c.Now()))); err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if got := is.KeyFetches(); got != 2 {
		t.Errorf("%d key-set fetches; want 2", got)
	}
	if _, err := v.Verify(context.Background(), sign(t, old, podClaims(is.URL, c.Now()))); err != nil {
		t.Errorf("token signed with the old key: %v", err)
	}

	c.Advance(RefetchInterval - time.Second)
	unknown := signingKey{ID: "rsa-3", Signer: identitytest.RSAKey(), Alg: jose.RS256}
	if _, err := v.Verify(context.Background(), sign(t, unknown, podClaims(is.URL, c.Now()))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("unknown key id: got %v; want ErrInvalidToken", err)
	}
	if got := is.KeyFetches(); got != 2 {
		t.Errorf("%d key-set fetches after a second unknown key id within %v; want 2", got, RefetchInterval)
	}
}

// TestUnknownKeyFlood sends tokens with made-up key ids: the issuer sees
// at most one fetch per RefetchInterval.
func TestUnknownKeyFlood(t *testing.T) {
	c, is, v := loadedVerifier(t, rsaSigner(t))
	// A made-up key id with a well-formed token: only the header matters.
	good := strings.Split(sign(t, rsaSigner(t), podClaims(is.URL, c.Now())), ".")
	header := func(i int) string {
		b, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "kid-" + strings.Repeat("x", i%7) + string(rune('a'+i%26))})
		return base64.RawURLEncoding.EncodeToString(b)
	}
	const perSecond = 50
	for s := 0; s < 30; s++ {
		for i := 0; i < perSecond; i++ {
			tok := header(s*perSecond+i) + "." + good[1] + "." + good[2]
			if _, err := v.Verify(context.Background(), tok); err == nil {
				t.Fatal("token with a made-up key id accepted")
			}
		}
		c.Advance(time.Second)
	}
	// 30 s of flood: one fetch at load, then one at 0 s, 10 s and 20 s.
	if got := is.KeyFetches(); got != 4 {
		t.Errorf("%d key-set fetches for 30 s of unknown key ids; want 4", got)
	}
}

// TestNewKeyAcceptedWithin12s publishes a key just after a fetch caused
// by an unknown key id: tokens signed with it are refused until the
// refetch limit lets the next fetch through, well within 12 s.
func TestNewKeyAcceptedWithin12s(t *testing.T) {
	c, is, v := loadedVerifier(t, rsaSigner(t))
	flood := sign(t, signingKey{ID: "made-up", Signer: identitytest.ECKey(), Alg: jose.ES256}, podClaims(is.URL, c.Now()))
	if _, err := v.Verify(context.Background(), flood); err == nil {
		t.Fatal("made-up key id accepted")
	}
	c.Advance(time.Second)
	fresh := ecSigner(t)
	is.Publish(rsaSigner(t), fresh)
	published := c.Now()
	var accepted time.Time
	for i := 0; i < 24; i++ {
		if _, err := v.Verify(context.Background(), sign(t, fresh, podClaims(is.URL, c.Now()))); err == nil {
			accepted = c.Now()
			break
		}
		c.Advance(500 * time.Millisecond)
	}
	if accepted.IsZero() {
		t.Fatal("token signed with the new key never accepted")
	}
	if d := accepted.Sub(published); d > 12*time.Second || d < RefetchInterval-2*time.Second {
		t.Errorf("accepted %v after publication; want within 12 s and only once the refetch limit allows", d)
	}
}

func TestCallerName(t *testing.T) {
	for sub, want := range map[string]string{
		"system:serviceaccount:billing:billing-api": "billing/billing-api",
		"system:serviceaccount:a:b":                 "a/b",
		"system:serviceaccount::b":                  "system:serviceaccount::b",
		"system:serviceaccount:a:":                  "system:serviceaccount:a:",
		"system:serviceaccount:a":                   "system:serviceaccount:a",
		"system:serviceaccount:a:b:c":               "system:serviceaccount:a:b:c",
		"system:node:worker-1":                      "system:node:worker-1",
		"0oa1b2c3d4e5f6g7h8i9":                      "0oa1b2c3d4e5f6g7h8i9",
		"reports@example.com":                       "reports@example.com",
	} {
		if got := CallerName(sub); got != want {
			t.Errorf("CallerName(%q) = %q; want %q", sub, got, want)
		}
	}
}

func TestIsJWT(t *testing.T) {
	for tok, want := range map[string]bool{
		"a.b.c":                true,
		"eyJh-_.eyJ0.c2ln":     true,
		"a.b.":                 false, // unsigned: never a token for the verifier
		".b.c":                 false,
		"a..c":                 false,
		"a.b":                  false,
		"a.b.c.d":              false,
		"abc":                  false,
		"":                     false,
		"a.b.c=":               false,
		"a+b.c.d":              false,
		"a.b.c ":               false,
		"9f86d081884c7d659a2f": false,
	} {
		if got := IsJWT(tok); got != want {
			t.Errorf("IsJWT(%q) = %v; want %v", tok, got, want)
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	cases := map[string]struct {
		o    Options
		want string
	}{
		"no issuer":         {Options{Audience: "a"}, "issuer: is empty"},
		"relative issuer":   {Options{Issuer: "/issuer", Audience: "a"}, "issuer: scheme must be http or https"},
		"issuer with user":  {Options{Issuer: "https://u:hunter2@issuer", Audience: "a"}, "issuer: must not contain user information"},
		"no audience":       {Options{Issuer: "https://issuer"}, "audience is empty"},
		"bad key set URL":   {Options{Issuer: "https://issuer", Audience: "a", JWKSURL: "ftp://x"}, "key set URL: scheme must be http or https"},
		"missing CA file":   {Options{Issuer: "https://issuer", Audience: "a", CAFile: "testdata/missing.pem"}, "reading CA file: open testdata/missing.pem: no such file or directory"},
		"CA file not a PEM": {Options{Issuer: "https://issuer", Audience: "a", CAFile: "identity.go"}, "CA file identity.go holds no PEM certificate"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v; want %q", err, tc.want)
			}
		})
	}
}
