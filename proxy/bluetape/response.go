package bluetape

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// read maps an upstream status and body to the encoded 200 body or an
// *Error, following the contract's table.
func (c *Client) read(resp *http.Response, body []byte) ([]byte, error) {
	outcome := strconv.Itoa(resp.StatusCode)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		b, err := encodeSignup(body)
		if err != nil {
			e := failed(outcome, err)
			e.failure = true
			return nil, e
		}
		return b, nil
	case code == http.StatusNotFound:
		return nil, NotFound(outcome)
	case code == http.StatusBadRequest:
		return nil, &Error{Status: http.StatusBadRequest, Reason: upstreamReason(body), Outcome: outcome}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, &Error{Status: http.StatusBadGateway, Reason: reasonCredentials, Outcome: outcome,
			Err: errors.New("upstream rejected the credentials")}
	case code == http.StatusTooManyRequests:
		return nil, &Error{Status: http.StatusServiceUnavailable, Reason: reasonBusy, Outcome: outcome,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
			Err:        errors.New("upstream is rate limiting the gateway")}
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		e := failed(outcome, fmt.Errorf("upstream answered %d", code))
		e.retryable, e.failure = true, true
		return nil, e
	case code >= 300 && code < 400:
		e := failed(outcome, fmt.Errorf("upstream answered a redirect (%d), not followed", code))
		e.failure = true
		return nil, e
	default:
		e := failed(outcome, fmt.Errorf("upstream answered %d", code))
		e.failure = code >= 500
		return nil, e
	}
}

// parseRetryAfter reads an upstream Retry-After (seconds or HTTP date,
// counted from now), bounded to [1s, 5m]; 1s when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	d := time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, time.Second), 5*time.Minute)
}

// encodeSignup checks an upstream 200 body and re-encodes it as the
// gateway's answer: exactly {"signUpUrl": "<absolute http(s) URL>"},
// escaped as encoding/json does (< > & included).
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
	return json.Marshal(struct {
		SignUpURL string `json:"signUpUrl"`
	}{*v.SignUpURL})
}

// upstreamReason extracts the reason of an upstream error body, made safe
// to pass on: one line of printable text, at most 200 characters.
func upstreamReason(body []byte) string {
	var v struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ReasonInvalid
	}
	r := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.TrimSpace(v.Reason))
	if r == "" {
		return ReasonInvalid
	}
	if len(r) > 200 {
		r = strings.ToValidUTF8(r[:200], "")
	}
	return r
}
