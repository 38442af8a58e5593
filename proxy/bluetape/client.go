// Package bluetape is the gateway's client of BlueTape's signup API. It
// builds the request and injects the credentials, owns the one transport,
// retries transient failures within a budget, holds a circuit breaker and
// the gateway-wide upstream quota, and reads and checks the answer.
//
// Fetch returns the encoded 200 body, or an *Error that carries all the
// API needs to answer: the status, the public reason, the metric outcome
// and Retry-After.
package bluetape

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
)

// maxBody caps how much of an upstream answer is read. A signup answer is
// under 200 bytes; anything past 64 KiB is not BlueTape's.
const maxBody = 64 << 10

// Credentials returns the values sent as X-BlueTape-Key and
// X-Integration-AccountId. It is called once per upstream request, so a
// rotated secret takes effect on the next call. It must be safe for
// concurrent use.
type Credentials func() (key, accountID string)

// Quota takes a token from a bucket under a policy. The gateway-wide
// upstream quota is its one bucket. Implementations must be safe for
// concurrent use and must not fail.
type Quota interface {
	Allow(ctx context.Context, key string, p ratelimit.Policy) ratelimit.Decision
}

// Options configures a Client. Fields without a stated default are
// required.
type Options struct {
	// BaseURL is BlueTape's base URL, without a trailing slash.
	BaseURL *url.URL
	// Credentials supplies the headers injected into every request.
	Credentials Credentials
	// Timeout bounds one attempt, body included.
	Timeout time.Duration
	// RateLimit caps requests per second sent upstream; zero means no
	// cap. Quota holds its bucket; by default one in process.
	RateLimit float64
	Quota     Quota
	// Version is sent in the User-Agent.
	Version string
	// Breaker tunes the circuit breaker; the zero value is the
	// production tuning.
	Breaker BreakerSettings
	// MaxInFlight caps the Fetch calls in progress at once, and the
	// transport's connections to BlueTape with them; by default 128. A
	// Fetch over it is refused at once with a 503.
	MaxInFlight int

	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock of Retry-After computations; by default time.Now.
	Now func() time.Time
	// Tracer makes a client span per attempt, which the request's
	// traceparent names as parent. If nil, the request carries the trace
	// context of Fetch's ctx as it is (propagation only).
	Tracer *tracing.Tracer
}

// Client calls BlueTape. It is safe for concurrent use. Create it with New.
type Client struct {
	base        *url.URL
	credentials Credentials
	timeout     time.Duration
	transport   *http.Transport
	quota       Quota
	quotaPolicy ratelimit.Policy
	breaker     *breaker
	retries     *retryBudget
	redactor    *Redactor
	maxFlight   int64
	inFlight    atomic.Int64
	userAgent   []string // the User-Agent header's value
	headers     atomic.Pointer[credentialValues]
	metrics     *metrics.Metrics
	now         func() time.Time
	tracer      *tracing.Tracer
	upstream    tracing.Upstream // the attempt spans' server
}

// New builds a client from o.
func New(o Options) (*Client, error) {
	switch {
	case o.BaseURL == nil:
		return nil, errors.New("bluetape: BaseURL is required")
	case o.Credentials == nil:
		return nil, errors.New("bluetape: Credentials is required")
	case o.Metrics == nil || o.Logger == nil:
		return nil, errors.New("bluetape: Metrics and Logger are required")
	case o.Timeout <= 0:
		return nil, errors.New("bluetape: Timeout must be positive")
	}
	if o.Quota == nil {
		o.Quota = localQuota{ratelimit.New(ratelimit.Options{MaxKeys: 1})}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 128
	}
	credentials := o.Credentials
	return &Client{
		base:        o.BaseURL,
		credentials: o.Credentials,
		timeout:     o.Timeout,
		transport:   newTransport(o.Timeout, o.MaxInFlight),
		quota:       o.Quota,
		quotaPolicy: quotaPolicy(o.RateLimit),
		breaker:     newBreaker(o.Breaker, o.Metrics, o.Logger, o.Now),
		retries:     newRetryBudget(),
		redactor: NewRedactor(func() []string {
			key, account := credentials()
			return []string{key, account}
		}),
		maxFlight: int64(o.MaxInFlight),
		userAgent: []string{"bluetape-gateway/" + o.Version},
		metrics:   o.Metrics,
		now:       o.Now,
		tracer:    o.Tracer,
		upstream:  upstreamOf(o.BaseURL),
	}, nil
}

// upstreamOf describes base for the attempt spans.
func upstreamOf(base *url.URL) tracing.Upstream {
	port, _ := strconv.Atoi(base.Port())
	if port == 0 {
		switch base.Scheme {
		case "http":
			port = 80
		case "https":
			port = 443
		}
	}
	return tracing.Upstream{Host: base.Hostname(), Port: port, Scheme: base.Scheme}
}

// Budget bounds one Fetch, retries included: two attempts' worth of time.
func (c *Client) Budget() time.Duration { return 2 * c.timeout }

// CloseIdleConnections closes the upstream connections kept alive.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// Redactor returns the redactor of the client's credentials, as they are
// in force at each use.
func (c *Client) Redactor() *Redactor { return c.redactor }

// InFlight returns the number of Fetch calls in progress.
func (c *Client) InFlight() int64 { return c.inFlight.Load() }

// newTransport builds the one transport used for every upstream request:
// pooled keep-alive connections sized for concurrency, at most maxConns
// to BlueTape (one per Fetch in progress), and no proxy from the
// environment. The client calls its RoundTrip directly, without an
// http.Client: a client would copy the headers of every request to follow
// redirects, and a redirect is never followed here. It is answered as an
// upstream failure, since following it would send the credentials to
// wherever it points.
func newTransport(timeout time.Duration, maxConns int) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   min(timeout, 3*time.Second),
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    min(512, maxConns),
		MaxConnsPerHost:        maxConns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// attempt is upstream exchange number n (from 1) of a Fetch, bounded by
// the per-attempt timeout and by ctx's deadline, whichever comes first.
// It is counted in the upstream metrics, and traced as a client span when
// the client has a tracer.
func (c *Client) attempt(ctx context.Context, id, requestID string, n int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var span trace.Span
	if c.tracer != nil {
		ctx, span = c.tracer.StartUpstreamAttempt(ctx, c.upstream, n)
	}
	start := time.Now()
	body, outcome, err := c.exchange(ctx, id, requestID)
	d := time.Since(start)
	if tid, _, sampled := tracing.IDs(ctx); sampled {
		c.metrics.UpstreamWithTrace(outcome, d, tid.String())
	} else {
		c.metrics.Upstream(outcome, d, requestID)
	}
	if span != nil {
		status, failure := attemptResult(outcome, err)
		tracing.EndUpstreamAttempt(span, status, failure)
	}
	return body, err
}

// attemptResult turns an attempt's outcome into its span's: the upstream
// status when it answered, and the failure's kind ("timeout", "error")
// when there was no usable answer, never an error's text.
func attemptResult(outcome string, err error) (status int, failure string) {
	status, convErr := strconv.Atoi(outcome)
	if convErr != nil {
		return 0, outcome
	}
	if e := ErrorOf(err); e != nil && e.failure && status < 500 {
		// An answer that could not be read or was not BlueTape's.
		return status, outcomeError
	}
	return status, ""
}

// exchange sends one request for id and reads its answer. ctx bounds the
// whole exchange, body included. It returns the metric outcome beside the
// result.
func (c *Client) exchange(ctx context.Context, id, requestID string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return nil, outcomeError, failed(outcomeError, err)
	}
	req.URL = signupURL(c.base, id)
	req.Host = req.URL.Host
	key, account := c.credentials()
	cv := c.credentialValues(key, account)
	// A new header map: nothing the caller sent reaches the upstream, and
	// each credential is sent exactly once with the configured value. The
	// values are shared, read-only, by every request (none is modified:
	// tracing.Inject sets its own).
	req.Header = make(http.Header, 8)
	req.Header["X-Bluetape-Key"] = cv.key
	req.Header["X-Integration-Accountid"] = cv.account
	req.Header["Content-Type"] = jsonValue
	req.Header["Accept"] = jsonValue
	req.Header["User-Agent"] = c.userAgent
	if requestID != "" {
		req.Header["X-Request-Id"] = []string{requestID}
	}
	// The trace context of ctx (the attempt's span): the caller's trace
	// goes on, with the gateway's span as parent.
	tracing.Inject(ctx, req.Header)

	// Go's transport quotes malformed upstream bytes in its errors, and
	// those may hold the credentials: they are redacted here, once, before
	// anything can log them.
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		e := transportError(ctx, c.redactor.RedactError(err))
		return nil, e.Outcome, e
	}
	defer resp.Body.Close()
	outcome := strconv.Itoa(resp.StatusCode)
	// The body is read into a pooled buffer: what is kept of it (the
	// signup URL, a reason) is copied out by read.
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer bodyBuffers.Put(buf)
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1))
	body := buf.Bytes()
	if err != nil {
		e := transportError(ctx, c.redactor.RedactError(err))
		e.Outcome = outcome
		return nil, outcome, e
	}
	if len(body) > maxBody {
		e := failed(outcome, errors.New("answer larger than 64 KiB"))
		e.failure = true
		return nil, outcome, e
	}
	b, err := c.read(resp, body, key, account)
	return b, outcome, err
}

// bodyBuffers holds the buffers answers are read into; none grows past
// maxBody+1 and bytes.MinRead.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// jsonValue is the Content-Type and Accept headers' value.
var jsonValue = []string{"application/json"}

// credentialValues are the credential headers' values, made once for the
// credentials in force rather than for each request.
type credentialValues struct {
	key, account []string
}

// credentialValues returns the header values of key and account, made
// anew only when a credential was rotated.
func (c *Client) credentialValues(key, account string) *credentialValues {
	if cv := c.headers.Load(); cv != nil && cv.key[0] == key && cv.account[0] == account {
		return cv
	}
	cv := &credentialValues{key: []string{key}, account: []string{account}}
	c.headers.Store(cv)
	return cv
}

// signupURL builds BlueTape's signup URL for id under base, which has
// no trailing slash. id is escaped as one path segment, so whatever it
// holds cannot change the host, the path around it or the query.
func signupURL(base *url.URL, id string) *url.URL {
	u := *base
	u.Path = base.Path + "/integration/customer/" + id + "/signup"
	u.RawPath = base.EscapedPath() + "/integration/customer/" + url.PathEscape(id) + "/signup"
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return &u
}

// localQuota adapts the in-process bucket store to Quota.
type localQuota struct{ s *ratelimit.Store }

func (l localQuota) Allow(_ context.Context, key string, p ratelimit.Policy) ratelimit.Decision {
	return l.s.Allow(key, p)
}
