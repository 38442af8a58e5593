package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxDocument bounds the size of a discovery document or key set.
const maxDocument = 1 << 20

// fetchTimeout bounds one fetch: discovery and key set together.
const fetchTimeout = 10 * time.Second

// Backoff bounds of Run while no key set is loaded.
const (
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// newHTTPClient returns a client for discovery and key sets that trusts
// the certificate authorities of caFile, or the system's when it is empty.
func newHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := ReadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: fetchTimeout}, nil
}

// ReadCAFile reads a PEM bundle of certificate authorities. It fails if
// the file is unreadable or holds no certificate.
func ReadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// Run loads the key set, trying again with a growing delay (from half a
// second up to 30 s) while the issuer cannot be reached, then fetches it
// again every RefreshInterval, keeping the last good keys when a fetch
// fails. It returns nil when ctx is done.
func (v *Verifier) Run(ctx context.Context) error {
	backoff := firstBackoff
	for {
		v.fetchMu.Lock()
		v.fetchLocked(ctx)
		v.fetchMu.Unlock()
		wait := v.refresh
		if !v.Ready() {
			wait = backoff
			backoff = min(2*backoff, maxBackoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.after(wait):
		}
	}
}

// fetchLocked fetches the key set and installs it, or keeps the last good
// one when the fetch fails. v.fetchMu must be held.
func (v *Verifier) fetchLocked(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	ks, err := v.fetchKeys(ctx)
	if err == nil {
		v.keys.Store(ks)
	}
	if v.onFetch != nil {
		v.onFetch(err)
	}
	switch {
	case err != nil && (!v.failing || !v.fetched):
		v.log.Warn("fetching the token issuer's key set failed; keeping the last good keys",
			"issuer", v.issuer, "error", err.Error())
	case err == nil && (v.failing || !v.fetched):
		v.log.Info("loaded the token issuer's key set", "issuer", v.issuer, "keys", len(ks.all))
	}
	v.failing = err != nil
	v.fetched = true
}

// fetchKeys discovers the key set's URL, unless one is configured, and
// fetches the key set.
func (v *Verifier) fetchKeys(ctx context.Context) (*keySet, error) {
	token, err := v.authToken()
	if err != nil {
		return nil, err
	}
	jwksURL := v.jwksURL
	if jwksURL == "" {
		var d struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		discovery := strings.TrimSuffix(v.issuer, "/") + "/.well-known/openid-configuration"
		if err := v.getJSON(ctx, discovery, token, &d); err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		if d.Issuer != v.issuer {
			return nil, errors.New("discovery: the document names another issuer")
		}
		if err := checkURL(d.JWKSURI); err != nil {
			return nil, fmt.Errorf("discovery: jwks_uri %w", err)
		}
		jwksURL = d.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := v.getJSON(ctx, jwksURL, token, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	ks := &keySet{byID: map[string][]any{}}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		if !usable(pub.Key) {
			continue
		}
		ks.byID[k.KeyID] = append(ks.byID[k.KeyID], pub.Key)
		ks.all = append(ks.all, pub.Key)
	}
	if len(ks.all) == 0 {
		return nil, errors.New("key set: no RSA or P-256 signing key")
	}
	return ks, nil
}

// usable reports whether key can check RS256 or ES256 signatures.
func usable(key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256()
	}
	return false
}

// authToken reads the token sent with discovery and key-set requests.
// Its errors never hold the file's content.
func (v *Verifier) authToken() (string, error) {
	if v.authTokenFile == "" {
		return "", nil
	}
	data, err := os.ReadFile(v.authTokenFile)
	if err != nil {
		return "", fmt.Errorf("reading auth token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("auth token file %s is empty", v.authTokenFile)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return "", fmt.Errorf("auth token file %s holds characters other than visible ASCII", v.authTokenFile)
		}
	}
	return tok, nil
}

func (v *Verifier) getJSON(ctx context.Context, url, token string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > maxDocument {
		return fmt.Errorf("GET %s: document larger than %d bytes", url, maxDocument)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("GET %s: unparsable document: %w", url, err)
	}
	return nil
}
