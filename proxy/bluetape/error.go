package bluetape

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Error is an upstream exchange that did not produce a signup URL: an
// answer the API passes on (BlueTape's 404 or 400), or a failure (502,
// 503, 504, or 499 when the caller went away). It carries everything the
// API needs to answer.
type Error struct {
	// Status is what the API answers: 400, 404, 499, 502, 503 or 504.
	Status int
	// Reason is the public sentence of the error body.
	Reason string
	// Outcome is the upstream metric's label: the upstream status,
	// "timeout" or "error"; "" when no request was sent (the breaker or
	// the quota refused it).
	Outcome string
	// RetryAfter, when positive, is sent as Retry-After.
	RetryAfter time.Duration
	// Err is the cause. It is logged, never shown to the caller.
	Err error

	retryable bool // a connection error or upstream 502/503/504
	failure   bool // counts against the circuit breaker
}

func (e *Error) Error() string {
	switch {
	case e.Outcome == "":
		// Refused before reaching the upstream: breaker or quota.
		return fmt.Sprint(e.Err)
	case e.Err != nil:
		return fmt.Sprintf("upstream %s: %v", e.Outcome, e.Err)
	}
	return "upstream " + e.Outcome
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorOf returns the first *Error in err's tree, as errors.As finds it,
// or nil: errors.As for this one type, without the allocation errors.As
// makes for its target on every miss.
func ErrorOf(err error) *Error {
	for err != nil {
		switch x := err.(type) {
		case *Error:
			return x
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, err := range x.Unwrap() {
				if e := ErrorOf(err); e != nil {
					return e
				}
			}
			return nil
		default:
			return nil
		}
	}
	return nil
}

// Failed reports whether the upstream failed to answer (a 5xx status),
// as opposed to an answer passed on or a caller that went away. An entry
// past its freshness may then be served instead.
func (e *Error) Failed() bool { return e.Status >= 500 }

// StatusClientClosed is the status logged (never sent) when the caller
// went away before its answer was ready, as nginx does.
const StatusClientClosed = 499

// Public reasons of the error bodies.
const (
	ReasonNotFound        = "Customer not found."
	ReasonInvalid         = "Invalid request."
	reasonFailed          = "The upstream failed to answer."
	ReasonTimeout         = "The upstream did not answer in time."
	reasonCredentials     = "The upstream rejected the gateway's credentials; operators have been alerted."
	reasonBusy            = "The upstream is refusing requests; retry later."
	reasonBreakerOpen     = "The upstream is failing; the gateway is holding requests back. Retry later."
	reasonQuota           = "The gateway's upstream quota is exhausted; retry later."
	reasonAtCapacity      = "The gateway has as many upstream calls in progress as it allows; retry shortly."
	reasonClientCancelled = "The request was cancelled."
)

// Metric outcomes other than an upstream status.
const (
	outcomeError   = "error"
	outcomeTimeout = "timeout"
)

// NotFound is BlueTape's answer that it knows no such customer, as Fetch
// returns it; outcome is the upstream metric's label.
func NotFound(outcome string) *Error {
	return &Error{Status: http.StatusNotFound, Reason: ReasonNotFound, Outcome: outcome}
}

// failed is a 502: the upstream gave no answer to pass on.
func failed(outcome string, cause error) *Error {
	return &Error{Status: http.StatusBadGateway, Reason: reasonFailed, Outcome: outcome, Err: cause}
}

// errBreakerOpen is the cause of every answer the breaker refuses.
var errBreakerOpen = errors.New("circuit breaker open")

func breakerError(retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Reason: reasonBreakerOpen,
		RetryAfter: max(retryAfter, time.Second), Err: errBreakerOpen}
}

// atCapacityError refuses a Fetch over Options.MaxInFlight. It does not
// count against the breaker: the upstream did not fail.
func atCapacityError() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Reason: reasonAtCapacity,
		RetryAfter: time.Second, Err: errors.New("upstream calls at capacity")}
}

func quotaError(d time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Reason: reasonQuota,
		RetryAfter: d, Err: errors.New("upstream quota exhausted")}
}

func isTimeout(ctx context.Context, err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded ||
		(errors.As(err, &ne) && ne.Timeout())
}

// transportError classifies a failure to get or read an answer.
func transportError(ctx context.Context, err error) *Error {
	if errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled {
		return &Error{Status: StatusClientClosed, Reason: reasonClientCancelled, Outcome: outcomeError, Err: err}
	}
	if isTimeout(ctx, err) {
		return &Error{Status: http.StatusGatewayTimeout, Reason: ReasonTimeout, Outcome: outcomeTimeout,
			failure: true, Err: err}
	}
	// Refused, reset, closed before an answer: nothing reached BlueTape's
	// application, or it gave no answer, and the request is a GET.
	e := failed(outcomeError, err)
	e.retryable, e.failure = true, true
	return e
}
