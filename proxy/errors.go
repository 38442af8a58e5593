package proxy

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/serve"
)

// apiError is an answer the gateway gives instead of a signup URL. reason
// is the public sentence of the error body; cause, if any, is logged and
// never shown to the caller.
type apiError struct {
	status     int
	reason     string
	retryAfter time.Duration // sets Retry-After when positive
	challenge  string        // sets WWW-Authenticate when not empty
	cause      error
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.reason + ": " + e.cause.Error()
	}
	return e.reason
}

func (e *apiError) Unwrap() error { return e.cause }

// statusClientClosed is logged (never sent) when the caller went away
// before its answer was ready.
const statusClientClosed = bluetape.StatusClientClosed

var (
	errInvalidID = &apiError{status: http.StatusBadRequest,
		reason: "The customer id must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -, and not . or .."}
	errNotFound     = &apiError{status: http.StatusNotFound, reason: bluetape.ReasonNotFound}
	errUnauthorized = &apiError{status: http.StatusUnauthorized,
		reason: "A valid bearer token is required.", challenge: "Bearer"}
	errInvalidToken = &apiError{status: http.StatusUnauthorized,
		reason: "The bearer token is not valid.", challenge: `Bearer error="invalid_token"`}
	errForbidden = &apiError{status: http.StatusForbidden,
		reason: "The caller is not allowed: its identity has no entry in the callers file."}
	errAtCapacity = &apiError{status: http.StatusServiceUnavailable,
		reason: "The gateway is at capacity; retry shortly.", retryAfter: time.Second}
	errShutdown = &apiError{status: http.StatusServiceUnavailable,
		reason: "The gateway is shutting down; retry.", retryAfter: time.Second, cause: serve.ErrShutdownTimeout}
	errRequestBody = &apiError{status: http.StatusBadRequest,
		reason: "A GET request carries no body (no Content-Length above 0, no Transfer-Encoding)."}
)

// cutByShutdown returns errShutdown for a request cancelled because the
// shutdown timeout ran out, which the caller did not choose, and err
// otherwise.
func cutByShutdown(c echo.Context, err error) error {
	if err != nil && errors.Is(err, context.Canceled) &&
		errors.Is(context.Cause(c.Request().Context()), serve.ErrShutdownTimeout) {
		return errShutdown
	}
	return err
}

// errorStatus maps any error from the request pipeline to the answer it
// gets. It is the one place that decides this.
func errorStatus(err error) *apiError {
	var ae *apiError
	var he *echo.HTTPError
	ue := bluetape.ErrorOf(err)
	switch {
	case errors.As(err, &ae):
		return ae
	case ue != nil:
		return &apiError{status: ue.Status, reason: ue.Reason, retryAfter: ue.RetryAfter, cause: ue}
	case errors.Is(err, context.Canceled):
		return &apiError{status: statusClientClosed, reason: "The client closed the request.", cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusGatewayTimeout, reason: bluetape.ReasonTimeout, cause: err}
	case errors.As(err, &he):
		return &apiError{status: he.Code, reason: routeReason(he.Code), cause: he.Internal}
	default:
		return &apiError{status: http.StatusInternalServerError, reason: "The gateway failed unexpectedly.", cause: err}
	}
}

func routeReason(code int) string {
	switch code {
	case http.StatusNotFound:
		return "No such route; the gateway serves GET /customers/{id}/signup."
	case http.StatusMethodNotAllowed:
		return "Method not allowed; use GET."
	default:
		if t := http.StatusText(code); t != "" {
			return t + "."
		}
		return "Request failed."
	}
}

// writeError writes the contract's error body for ae.
func writeError(c echo.Context, ae *apiError) {
	status := ae.status
	if c.Response().Committed || status == statusClientClosed {
		return
	}
	h := c.Response().Header()
	if ae.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.retryAfter)))
	}
	if ae.challenge != "" {
		h.Set("WWW-Authenticate", ae.challenge)
	}
	if status == http.StatusMethodNotAllowed {
		h["Allow"] = allowGET
	}
	_ = writeJSON(c, status, errorBody(status, ae.reason))
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		return 1
	}
	return s
}

// errorBody encodes {"code": "<status>", "reason": "<reason>"}.
func errorBody(status int, reason string) []byte {
	b := make([]byte, 0, 32+len(reason))
	b = append(b, `{"code":"`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `","reason":`...)
	b = appendJSONString(b, reason)
	return append(b, '}')
}

// jsonContentType, nosniff, allowGET and connectionClose are shared by
// every answer's header map; net/http only reads them, and a slice of
// capacity one cannot be appended to in place.
var (
	jsonContentType = []string{"application/json"}
	nosniff         = []string{"nosniff"}
	allowGET        = []string{http.MethodGet}
	connectionClose = []string{"close"}
)

// writeJSON writes an encoded JSON body, with X-Content-Type-Options:
// nosniff as every API answer. It sets the header map's entries directly,
// which saves the allocation of Header.Set on the hot path.
func writeJSON(c echo.Context, status int, body []byte) error {
	r := c.Response()
	r.Header()["Content-Type"] = jsonContentType
	r.Header()["X-Content-Type-Options"] = nosniff
	r.WriteHeader(status)
	_, err := r.Write(body)
	return err
}
