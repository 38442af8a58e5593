package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxUpstreamBody caps how much of an upstream answer is read. A signup
// answer is under 200 bytes; anything past 64 KiB is not BlueTape's.
const maxUpstreamBody = 64 << 10

// Credentials returns the values sent as X-BlueTape-Key and
// X-Integration-AccountId. It is called once per upstream request, so a
// rotated secret takes effect on the next call. It must be safe for
// concurrent use.
type Credentials func() (key, accountID string)

// newUpstreamTransport builds the one transport used for every upstream
// request: pooled keep-alive connections sized for concurrency, and no
// proxy from the environment. The gateway calls its RoundTrip directly,
// without an http.Client: a client would copy the headers of every request
// to follow redirects, and a redirect is never followed here. It is
// answered as an upstream failure, since following it would send the
// credentials to wherever it points.
func newUpstreamTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   min(timeout, 3*time.Second),
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    512,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// upstreamAnswer is an upstream answer the gateway passes on: a signup URL
// (200), not found (404) or invalid request (400).
type upstreamAnswer struct {
	status int
	body   []byte // encoded 200 body
	reason string // upstream's reason for a 400
}

// upstreamError is an upstream exchange that produced no answer to pass on.
type upstreamError struct {
	status     int    // what the gateway answers: 502, 503 or 504
	reason     string // public sentence
	outcome    string // metric outcome: upstream status, "timeout" or "error"; "" if not sent
	retryable  bool   // a connection error or upstream 502/503/504
	failure    bool   // counts against the circuit breaker
	retryAfter time.Duration
	cause      error
}

func (e *upstreamError) Error() string {
	switch {
	case e.outcome == "":
		// Refused before reaching the upstream: breaker or quota.
		return fmt.Sprint(e.cause)
	case e.cause != nil:
		return fmt.Sprintf("upstream %s: %v", e.outcome, e.cause)
	}
	return "upstream " + e.outcome
}

func (e *upstreamError) Unwrap() error { return e.cause }

func (e *upstreamError) apiError() *apiError {
	return &apiError{status: e.status, reason: e.reason, retryAfter: e.retryAfter, cause: e}
}

const (
	reasonUpstreamFailed  = "The upstream failed to answer."
	reasonUpstreamTimeout = "The upstream did not answer in time."
	reasonCredentials     = "The upstream rejected the gateway's credentials; operators have been alerted."
	reasonUpstreamBusy    = "The upstream is refusing requests; retry later."
)

// exchange sends one request for id upstream and reads its answer.
// ctx bounds the whole exchange, body included.
func (g *Gateway) exchange(ctx context.Context, id, requestID string) (upstreamAnswer, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return upstreamAnswer{}, "error", &upstreamError{status: http.StatusBadGateway,
			reason: reasonUpstreamFailed, outcome: "error", cause: err}
	}
	req.URL = upstreamURL(g.base, id)
	req.Host = req.URL.Host
	key, account := g.credentials()
	// A new header map: nothing the caller sent reaches the upstream, and
	// each credential is sent exactly once with the configured value.
	req.Header = http.Header{
		"X-Bluetape-Key":          {key},
		"X-Integration-Accountid": {account},
		"Content-Type":            {"application/json"},
		"Accept":                  {"application/json"},
		"User-Agent":              {g.userAgent},
	}
	if requestID != "" {
		req.Header["X-Request-Id"] = []string{requestID}
	}

	resp, err := g.transport.RoundTrip(req)
	if err != nil {
		return upstreamAnswer{}, transportOutcome(ctx, err), transportError(ctx, err)
	}
	defer resp.Body.Close()
	outcome := strconv.Itoa(resp.StatusCode)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody+1))
	if err != nil {
		ue := transportError(ctx, err)
		ue.outcome = outcome
		return upstreamAnswer{}, outcome, ue
	}
	if len(body) > maxUpstreamBody {
		return upstreamAnswer{}, outcome, &upstreamError{status: http.StatusBadGateway, reason: reasonUpstreamFailed,
			outcome: outcome, failure: true, cause: errors.New("answer larger than 64 KiB")}
	}
	answer, err := interpret(resp, body)
	return answer, outcome, err
}

func transportOutcome(ctx context.Context, err error) string {
	if isTimeout(ctx, err) {
		return "timeout"
	}
	return "error"
}

func isTimeout(ctx context.Context, err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded ||
		(errors.As(err, &ne) && ne.Timeout())
}

// transportError classifies a failure to get or read an answer.
func transportError(ctx context.Context, err error) *upstreamError {
	if errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled {
		return &upstreamError{status: statusClientClosed, reason: "The request was cancelled.",
			outcome: "error", cause: err}
	}
	if isTimeout(ctx, err) {
		return &upstreamError{status: http.StatusGatewayTimeout, reason: reasonUpstreamTimeout,
			outcome: "timeout", failure: true, cause: err}
	}
	// Refused, reset, closed before an answer: nothing reached BlueTape's
	// application, or it gave no answer, and the request is a GET.
	return &upstreamError{status: http.StatusBadGateway, reason: reasonUpstreamFailed,
		outcome: "error", retryable: true, failure: true, cause: err}
}

// interpret maps an upstream status and body to an answer or an error,
// following the contract's table.
func interpret(resp *http.Response, body []byte) (upstreamAnswer, error) {
	outcome := strconv.Itoa(resp.StatusCode)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		b, err := encodeSignup(body)
		if err != nil {
			return upstreamAnswer{}, &upstreamError{status: http.StatusBadGateway, reason: reasonUpstreamFailed,
				outcome: outcome, failure: true, cause: err}
		}
		return upstreamAnswer{status: http.StatusOK, body: b}, nil
	case code == http.StatusNotFound:
		return upstreamAnswer{status: http.StatusNotFound}, nil
	case code == http.StatusBadRequest:
		return upstreamAnswer{status: http.StatusBadRequest, reason: upstreamReason(body)}, nil
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return upstreamAnswer{}, &upstreamError{status: http.StatusBadGateway, reason: reasonCredentials,
			outcome: outcome, cause: errors.New("upstream rejected the credentials")}
	case code == http.StatusTooManyRequests:
		return upstreamAnswer{}, &upstreamError{status: http.StatusServiceUnavailable, reason: reasonUpstreamBusy,
			outcome: outcome, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
			cause: errors.New("upstream is rate limiting the gateway")}
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		return upstreamAnswer{}, &upstreamError{status: http.StatusBadGateway, reason: reasonUpstreamFailed,
			outcome: outcome, retryable: true, failure: true, cause: fmt.Errorf("upstream answered %d", code)}
	case code >= 300 && code < 400:
		return upstreamAnswer{}, &upstreamError{status: http.StatusBadGateway, reason: reasonUpstreamFailed,
			outcome: outcome, failure: true, cause: fmt.Errorf("upstream answered a redirect (%d), not followed", code)}
	default:
		return upstreamAnswer{}, &upstreamError{status: http.StatusBadGateway, reason: reasonUpstreamFailed,
			outcome: outcome, failure: code >= 500, cause: fmt.Errorf("upstream answered %d", code)}
	}
}

// parseRetryAfter reads an upstream Retry-After (seconds or HTTP date),
// bounded to [1s, 5m]; 1s when absent or unreadable.
func parseRetryAfter(v string) time.Duration {
	d := time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, time.Second), 5*time.Minute)
}

// encodeSignup checks an upstream 200 body and re-encodes it as the
// gateway's answer: exactly {"signUpUrl": "<absolute http(s) URL>"}.
func encodeSignup(body []byte) ([]byte, error) {
	var v struct {
		SignUpURL *string `json:"signUpUrl"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("parsing upstream answer: %w", err)
	}
	if v.SignUpURL == nil || *v.SignUpURL == "" {
		return nil, errors.New("upstream answer has no signUpUrl")
	}
	u, err := url.Parse(*v.SignUpURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("upstream signUpUrl is not an absolute http(s) URL")
	}
	b := make([]byte, 0, len(*v.SignUpURL)+16)
	b = append(b, `{"signUpUrl":`...)
	b = appendJSONString(b, *v.SignUpURL)
	return append(b, '}'), nil
}

// upstreamReason extracts the reason of an upstream error body, made safe
// to pass on: one line of printable text, at most 200 characters.
func upstreamReason(body []byte) string {
	var v struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &v) != nil {
		return "Invalid request."
	}
	r := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.TrimSpace(v.Reason))
	if r == "" {
		return "Invalid request."
	}
	if len(r) > 200 {
		r = strings.ToValidUTF8(r[:200], "")
	}
	return r
}
