// Package identity authenticates callers by the JSON Web Tokens an OIDC
// issuer signs for them, such as the projected service-account tokens of
// Kubernetes. A Verifier checks a token's signature against the issuer's
// key set, which it discovers and fetches itself, and its issuer,
// audience and validity period; it names the caller by the token's
// subject.
//
// All JOSE work (parsing, algorithm checks, signatures) is done by
// github.com/go-jose/go-jose/v4.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Leeway is how far a token's exp and nbf may be off the gateway's clock.
const Leeway = 60 * time.Second

// RefetchInterval is the shortest time between two key-set fetches caused
// by tokens signed with a key id the Verifier does not know. A flood of
// made-up key ids costs the issuer at most one fetch per interval, and a
// token signed with a newly published key is accepted at most this long
// (plus one fetch) after the key's publication.
const RefetchInterval = 10 * time.Second

// MaxTokenSize is the size of the largest token Verify reads.
const MaxTokenSize = 8 << 10

// DefaultCacheSize is the number of verified tokens remembered when
// Options.CacheSize is zero.
const DefaultCacheSize = 10000

// signatureAlgorithms are the only algorithms a token may be signed with:
// never "none", never HMAC.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// ErrInvalidToken is the error, possibly wrapped, of every token Verify
// refuses. Its text and the texts wrapping it never hold the token.
var ErrInvalidToken = errors.New("invalid token")

// Options configures a Verifier.
type Options struct {
	// Issuer is the issuer whose tokens are accepted; a token's iss must
	// equal it exactly. It must be an absolute http or https URL.
	Issuer string
	// Audience must be one of a token's aud values. Required.
	Audience string
	// JWKSURL is where the key set is fetched. If empty, it is the
	// jwks_uri of the issuer's {Issuer}/.well-known/openid-configuration,
	// read at each fetch.
	JWKSURL string
	// CAFile names a PEM bundle of the certificate authorities trusted
	// for discovery and key-set requests. If empty, the system roots are.
	CAFile string
	// AuthTokenFile names a file holding a bearer token sent with the
	// discovery and key-set requests. It is read at each fetch, so a
	// rotated token is picked up. If empty, no token is sent.
	AuthTokenFile string
	// HTTPClient makes the discovery and key-set requests. If nil, a
	// client with a 10 s timeout that trusts CAFile is used; when set,
	// CAFile is ignored.
	HTTPClient *http.Client

	// CacheSize bounds the number of verified tokens remembered until
	// they expire. By default, it is DefaultCacheSize.
	CacheSize int
	// RefreshInterval is how often Run fetches the key set once it has
	// one, so that keys the issuer withdraws stop being trusted. By
	// default, it is 10 minutes.
	RefreshInterval time.Duration

	// Logger receives a line each time fetching the key set starts or
	// stops failing. If nil, slog.Default() is used.
	Logger *slog.Logger
	// OnFetch, if not nil, is called after every attempt to fetch the key
	// set, with nil when it succeeded. It must be safe to be called
	// concurrently; the gateway counts the errors in a metric.
	OnFetch func(err error)
	// Now returns the current time. If nil, time.Now is used.
	Now func() time.Time
}

// Identity is the caller a verified token names.
type Identity struct {
	// Subject is the token's sub claim.
	Subject string
	// Caller is the caller's name: namespace/name for a Kubernetes
	// service account, else the subject. See CallerName.
	Caller string
	// Expiry is the token's exp claim.
	Expiry time.Time
}

// Verifier verifies tokens of one issuer for one audience. Its methods are
// safe to be called concurrently.
type Verifier struct {
	issuer, audience string
	jwksURL          string
	authTokenFile    string
	client           *http.Client
	refresh          time.Duration
	log              *slog.Logger
	onFetch          func(error)
	now              func() time.Time

	keys   atomic.Pointer[keySet]
	tokens *tokenCache

	// fetchMu serialises fetches; the fields below it are guarded by it.
	fetchMu   sync.Mutex
	lastFetch time.Time // the last attempt caused by an unknown key id
	failing   bool      // whether the last attempt failed
	fetched   bool      // whether any attempt was made

	// after waits before Run's next attempt; tests replace it.
	after func(time.Duration) <-chan time.Time
	// signatureChecks counts signature verifications, for tests.
	signatureChecks atomic.Int64
}

// keySet is a fetched key set: the usable public keys by key id.
type keySet struct {
	byID map[string][]any
	all  []any
}

// New returns a Verifier for o. It fetches nothing: Run loads the key
// set, and Verify fetches it when a token names a key it has not seen.
func New(o Options) (*Verifier, error) {
	if err := checkURL(o.Issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if o.Audience == "" {
		return nil, errors.New("audience is empty")
	}
	if o.JWKSURL != "" {
		if err := checkURL(o.JWKSURL); err != nil {
			return nil, fmt.Errorf("key set URL: %w", err)
		}
	}
	client := o.HTTPClient
	if client == nil {
		var err error
		if client, err = newHTTPClient(o.CAFile); err != nil {
			return nil, err
		}
	}
	size := o.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	v := &Verifier{
		issuer:        o.Issuer,
		audience:      o.Audience,
		jwksURL:       o.JWKSURL,
		authTokenFile: o.AuthTokenFile,
		client:        client,
		refresh:       o.RefreshInterval,
		log:           o.Logger,
		onFetch:       o.OnFetch,
		now:           o.Now,
		tokens:        newTokenCache(size),
		after:         time.After,
	}
	if v.refresh <= 0 {
		v.refresh = 10 * time.Minute
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// checkURL accepts an absolute http or https URL with a host and without
// user information. Its errors never quote the URL.
func checkURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("is empty")
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("scheme must be http or https")
	case u.Host == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not contain user information")
	}
	return nil
}

// Verify checks token and returns the identity it names. The token must
// be signed with RS256 or ES256 by a key of the issuer's key set, carry
// the issuer as iss, the audience among its aud, an exp, and be within
// exp and nbf give or take Leeway. A token verified before is answered
// from memory until it expires.
//
// A token signed with a key id not in the key set makes Verify fetch the
// key set again, and wait for it (at most 10 s), unless a fetch for that
// reason was made less than RefetchInterval ago. The fetch is not
// cancelled with ctx, as other requests may be waiting for it. Every error
// is ErrInvalidToken, wrapped with a reason that never holds the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	now := v.now()
	if id, ok := v.tokens.get(token); ok {
		if now.After(id.Expiry.Add(Leeway)) {
			v.tokens.delete(token)
			return Identity{}, invalid("token expired")
		}
		return id, nil
	}
	id, err := v.verify(ctx, token, now)
	if err != nil {
		return Identity{}, err
	}
	v.tokens.add(token, id, now)
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (Identity, error) {
	if len(token) > MaxTokenSize || !IsJWT(token) {
		return Identity{}, invalid("not a JSON Web Token")
	}
	tok, err := jwt.ParseSigned(token, signatureAlgorithms)
	if err != nil {
		return Identity{}, invalid("unparsable or unaccepted algorithm")
	}
	if len(tok.Headers) != 1 {
		return Identity{}, invalid("not exactly one signature")
	}
	kid := tok.Headers[0].KeyID
	keys := v.keysFor(ctx, kid)
	if len(keys) == 0 {
		return Identity{}, invalid("signed by an unknown key")
	}
	var c jwt.Claims
	verified := false
	for _, k := range keys {
		v.signatureChecks.Add(1)
		if err := tok.Claims(k, &c); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Identity{}, invalid("bad signature")
	}
	if c.Expiry == nil {
		return Identity{}, invalid("token has no exp")
	}
	err = c.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.issuer,
		AnyAudience: jwt.Audience{v.audience},
		Time:        now,
	}, Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Identity{}, invalid("wrong issuer")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Identity{}, invalid("wrong audience")
	case errors.Is(err, jwt.ErrExpired):
		return Identity{}, invalid("token expired")
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Identity{}, invalid("token not valid yet")
	case err != nil:
		return Identity{}, invalid("claims not valid")
	}
	if c.Subject == "" {
		return Identity{}, invalid("token has no sub")
	}
	return Identity{Subject: c.Subject, Caller: CallerName(c.Subject), Expiry: c.Expiry.Time()}, nil
}

func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// keysFor returns the keys a token with key id kid may be signed with,
// fetching the key set again when kid is unknown and the last such fetch
// is at least RefetchInterval old. A token without a key id may be signed
// by any key of the set.
func (v *Verifier) keysFor(ctx context.Context, kid string) []any {
	ks := v.keys.Load()
	if kid == "" {
		if ks == nil {
			return nil
		}
		return ks.all
	}
	if ks != nil {
		if k := ks.byID[kid]; len(k) > 0 {
			return k
		}
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	// Another request may have fetched the key while this one waited.
	if ks := v.keys.Load(); ks != nil && len(ks.byID[kid]) > 0 {
		return ks.byID[kid]
	}
	now := v.now()
	if !v.lastFetch.IsZero() && now.Sub(v.lastFetch) < RefetchInterval {
		return nil
	}
	v.lastFetch = now
	v.fetchLocked(ctx)
	if ks := v.keys.Load(); ks != nil {
		return ks.byID[kid]
	}
	return nil
}

// Ready reports whether a key set has been loaded.
func (v *Verifier) Ready() bool {
	return v.keys.Load() != nil
}

// IsJWT reports whether token has the shape of a JSON Web Token in compact
// serialisation: three non-empty base64url parts separated by dots. It
// tells a token for the Verifier from an opaque static token; it checks
// nothing else.
func IsJWT(token string) bool {
	dots, last := 0, -1 // the number of dots, and the index of the last
	for i := 0; i < len(token); i++ {
		c := token[i]
		if base64URL[c] {
			continue
		}
		if c != '.' || i == last+1 {
			return false
		}
		dots++
		last = i
	}
	return dots == 2 && last < len(token)-1
}

// base64URL marks the bytes of the base64url alphabet. A table lookup
// per byte keeps IsJWT cheap on the hot path, where it reads every byte
// of a token of about 1 KB.
var base64URL = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	return t
}()

// CallerName returns the caller name of a token subject: namespace/name
// for a Kubernetes service account's subject
// system:serviceaccount:<namespace>:<name>, and the subject itself
// otherwise.
func CallerName(sub string) string {
	const prefix = "system:serviceaccount:"
	rest, ok := strings.CutPrefix(sub, prefix)
	if !ok {
		return sub
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return sub
	}
	return ns + "/" + name
}
