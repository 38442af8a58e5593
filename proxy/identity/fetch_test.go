package identity

import (
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// fetchLog records what OnFetch reports.
type fetchLog struct {
	mu   sync.Mutex
	errs []error
}

func (f *fetchLog) OnFetch(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

func (f *fetchLog) failures() (failed, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		if e != nil {
			failed++
		}
	}
	return failed, len(f.errs)
}

// stepper replaces Verifier.after: each wait Run asks for is sent on
// waits, and Run resumes only when the test sends on ticks.
type stepper struct {
	waits chan time.Duration
	ticks chan time.Time
}

func newStepper(v *Verifier) *stepper {
	s := &stepper{waits: make(chan time.Duration), ticks: make(chan time.Time)}
	v.after = func(d time.Duration) <-chan time.Time {
		s.waits <- d
		return s.ticks
	}
	return s
}

// next waits, for at most 10 s, until Run asks to wait, and returns for
// how long.
func (s *stepper) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.waits:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not come to its next wait")
		return 0
	}
}

// TestIssuerDownAtStart runs the Verifier while its issuer is down: it is
// not ready, retries with a growing, bounded delay, loads the keys once
// the issuer is up, keeps them when the issuer goes down again, and logs
// each change of state once.
func TestIssuerDownAtStart(t *testing.T) {
	c := newClock()
	is := newIssuer(t, false, rsaSigner(t))
	is.SetDown(true)
	var fl fetchLog
	var logs gatewaytest.LogBuffer
	v := newVerifier(t, is, c, Options{
		OnFetch:         fl.OnFetch,
		Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
		RefreshInterval: time.Hour,
	})
	s := newStepper(v)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case <-done:
				return
			case <-s.waits:
			case s.ticks <- time.Time{}:
			case <-deadline:
				t.Error("Run did not return after its context was cancelled")
				return
			}
		}
	})

	var waits []time.Duration
	for i := range 10 {
		waits = append(waits, s.next(t))
		if v.Ready() {
			t.Fatal("ready while the issuer has never answered")
		}
		if i < 9 {
			s.ticks <- time.Time{}
		}
	}
	for i, w := range waits {
		if i > 0 && w < waits[i-1] {
			t.Errorf("delays %v do not grow", waits)
			break
		}
	}
	if waits[0] >= waits[9] || waits[9] > maxBackoff {
		t.Errorf("delays %v: want growing, and at most %v", waits, maxBackoff)
	}
	tok := sign(t, rsaSigner(t), podClaims(is.URL, c.Now()))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token verified without keys: %v", err)
	}

	is.SetDown(false)
	s.ticks <- time.Time{}
	if w := s.next(t); w != time.Hour {
		t.Errorf("after loading, Run waits %v; want the refresh interval", w)
	}
	if !v.Ready() {
		t.Fatal("not ready once the issuer answered")
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("token refused once keys are loaded: %v", err)
	}

	// The issuer goes down again: refreshes fail, the keys stay.
	is.SetDown(true)
	for range 3 {
		s.ticks <- time.Time{}
		if w := s.next(t); w != time.Hour {
			t.Errorf("with keys loaded, Run waits %v; want the refresh interval", w)
		}
	}
	v.tokens.delete(tok)
	if !v.Ready() {
		t.Error("not ready after a failed refresh")
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("token refused after a failed refresh: %v", err)
	}

	// 10 attempts of Run and one of Verify while the issuer was down,
	// one success, then 3 failed refreshes.
	failed, total := fl.failures()
	if failed != 10+1+3 || total != 10+1+1+3 || fl.errs[11] != nil {
		t.Errorf("OnFetch saw %d failures in %d fetches; want 14 in 15 with the 12th a success", failed, total)
	}
	out := logs.String()
	if n := strings.Count(out, "fetching the token issuer's key set failed"); n != 2 {
		t.Errorf("%d failure lines; want 2 (one per change of state):\n%s", n, out)
	}
	if n := strings.Count(out, "loaded the token issuer's key set"); n != 1 {
		t.Errorf("%d success lines; want 1:\n%s", n, out)
	}
}

// TestAuthTokenFile checks that the token of the auth token file is sent
// on both the discovery and the key-set requests, and that a new token in
// the file is sent at the next fetch.
func TestAuthTokenFile(t *testing.T) {
	c := newClock()
	is := newIssuer(t, false, rsaSigner(t))
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var fl fetchLog
	v := newVerifier(t, is, c, Options{AuthTokenFile: file, OnFetch: fl.OnFetch})
	load(v)
	if err := os.WriteFile(file, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	load(v)
	got := is.AuthHeaders()
	want := []string{"Bearer first-token", "Bearer first-token", "Bearer second-token", "Bearer second-token"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers %q; want %q", got, want)
	}
	if is.Discoveries() != 2 || is.KeyFetches() != 2 {
		t.Errorf("%d discoveries, %d key-set fetches; want 2 and 2", is.Discoveries(), is.KeyFetches())
	}

	// An unreadable token file fails the fetch, naming the file only.
	if err := os.WriteFile(file, []byte("bad\x01token"), 0o600); err != nil {
		t.Fatal(err)
	}
	load(v)
	failed, _ := fl.failures()
	if failed != 1 || !v.Ready() {
		t.Fatalf("%d failures, ready %v; want 1 failure and the keys kept", failed, v.Ready())
	}
	if err := fl.errs[2]; strings.Contains(err.Error(), "token\x01") || strings.Contains(err.Error(), "bad") {
		t.Errorf("error holds the token: %v", err)
	}
	if len(is.AuthHeaders()) != 4 {
		t.Error("a request was made with a malformed token")
	}
}

func TestNoAuthTokenFile(t *testing.T) {
	is := newIssuer(t, false, rsaSigner(t))
	v := newVerifier(t, is, newClock(), Options{})
	load(v)
	if got := is.AuthHeaders(); len(got) != 2 || got[0] != "" || got[1] != "" {
		t.Errorf("Authorization headers %q; want two empty ones", got)
	}
}

// TestCAFile fetches from a TLS issuer whose certificate authority is
// named by Options.CAFile, and checks that without it the fetch fails.
func TestCAFile(t *testing.T) {
	c := newClock()
	is := newIssuer(t, true, ecSigner(t))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Server.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, is, c, Options{CAFile: caFile})
	load(v)
	if !v.Ready() {
		t.Fatal("keys not loaded over TLS with the CA file")
	}
	if _, err := v.Verify(context.Background(), sign(t, ecSigner(t), podClaims(is.URL, c.Now()))); err != nil {
		t.Errorf("token refused: %v", err)
	}

	var fl fetchLog
	untrusting, err := New(Options{Issuer: is.URL, Audience: audience, OnFetch: fl.OnFetch, Logger: v.log, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	load(untrusting)
	if untrusting.Ready() {
		t.Error("keys loaded from an issuer whose certificate is not trusted")
	}
	if failed, _ := fl.failures(); failed != 1 {
		t.Errorf("%d failures; want 1", failed)
	}
}

// TestJWKSURL fetches the key set from the configured URL, without
// discovery.
func TestJWKSURL(t *testing.T) {
	is := newIssuer(t, false, rsaSigner(t))
	v := newVerifier(t, is, newClock(), Options{JWKSURL: is.URL + "/openid/v1/jwks"})
	load(v)
	if !v.Ready() || is.Discoveries() != 0 || is.KeyFetches() != 1 {
		t.Errorf("ready %v after %d discoveries and %d key-set fetches; want ready, 0, 1",
			v.Ready(), is.Discoveries(), is.KeyFetches())
	}
}

// TestTokenCache checks that a token verified once is answered without a
// signature check until it expires, and refused after.
func TestTokenCache(t *testing.T) {
	c, is, v := loadedVerifier(t, rsaSigner(t))
	tok := sign(t, rsaSigner(t), podClaims(is.URL, c.Now()))
	first, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.signatureChecks.Load(); n != 1 {
		t.Fatalf("%d signature checks for the first verification; want 1", n)
	}
	c.Advance(30 * time.Minute)
	second, err := v.Verify(context.Background(), tok)
	if err != nil || second != first {
		t.Fatalf("second verification: %+v, %v; want %+v", second, err, first)
	}
	if n := v.signatureChecks.Load(); n != 1 {
		t.Errorf("%d signature checks after the second verification; want still 1", n)
	}

	c.Advance(30*time.Minute + Leeway + time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired cached token: got %v; want ErrInvalidToken", err)
	}
	if n := v.tokens.len(); n != 0 {
		t.Errorf("%d cached tokens after the expired one was refused; want 0", n)
	}
}

// TestTokenCacheBounded verifies more distinct tokens than the cache
// holds.
func TestTokenCacheBounded(t *testing.T) {
	c := newClock()
	is := newIssuer(t, false, ecSigner(t))
	v := newVerifier(t, is, c, Options{CacheSize: 8})
	load(v)
	for i := range 20 {
		cl := podClaims(is.URL, c.Now())
		cl.ID = strings.Repeat("j", i+1)
		if _, err := v.Verify(context.Background(), sign(t, ecSigner(t), cl)); err != nil {
			t.Fatal(err)
		}
		if n := v.tokens.len(); n > 8 {
			t.Fatalf("%d cached tokens; want at most 8", n)
		}
	}
}
