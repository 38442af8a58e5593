package bluetape

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// read maps an upstream status and body to the encoded 200 body or an
// *Error, following the contract's table. key and account are the
// credentials the request was sent with: a signup URL holding one is
// refused, and an error reason passed on has the current ones redacted.
func (c *Client) read(resp *http.Response, body []byte, key, account string) ([]byte, error) {
	outcome := strconv.Itoa(resp.StatusCode)
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		b, err := encodeSignup(body, key, account)
		if err != nil {
			e := failed(outcome, err)
			e.failure = true
			return nil, e
		}
		return b, nil
	case code == http.StatusNotFound:
		return nil, NotFound(outcome)
	case code == http.StatusBadRequest:
		return nil, &Error{Status: http.StatusBadRequest, Reason: upstreamReason(body, c.redactor), Outcome: outcome}
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

// encodeSignup checks an upstream 200 body with DecodeSignup and encodes
// the gateway's own answer from it: exactly {"signUpUrl": "<URL>"},
// escaped as encoding/json does (< > & included). Its errors quote
// nothing of body.
func encodeSignup(body []byte, secrets ...string) ([]byte, error) {
	u, err := DecodeSignup(body, secrets...)
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		SignUpURL string `json:"signUpUrl"`
	}{u})
}

// upstreamReason extracts the reason of an upstream error body, made safe
// to pass on: the credentials redacted, then one line of printable text,
// at most 200 characters. Redacting before cutting leaves no part of a
// credential at the cut.
func upstreamReason(body []byte, red *Redactor) string {
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
	}, strings.TrimSpace(red.Redact(v.Reason)))
	if r == "" {
		return ReasonInvalid
	}
	if len(r) > 200 {
		r = strings.ToValidUTF8(r[:200], "")
	}
	return r
}
