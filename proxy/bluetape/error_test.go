package bluetape

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestErrorOfIsErrorsAs checks that ErrorOf finds what errors.As finds,
// through wrapping and joined errors.
func TestErrorOfIsErrorsAs(t *testing.T) {
	e := NotFound("404")
	for name, err := range map[string]error{
		"nil":            nil,
		"itself":         e,
		"wrapped":        fmt.Errorf("fetch: %w", e),
		"wrapped twice":  fmt.Errorf("a: %w", fmt.Errorf("b: %w", e)),
		"joined":         errors.Join(context.Canceled, fmt.Errorf("b: %w", e)),
		"two %w":         fmt.Errorf("%w and %w", errors.New("x"), e),
		"other":          context.DeadlineExceeded,
		"joined, absent": errors.Join(context.Canceled, errors.New("x")),
	} {
		var want *Error
		errors.As(err, &want)
		if got := ErrorOf(err); got != want {
			t.Errorf("%s: ErrorOf = %v; errors.As finds %v", name, got, want)
		}
	}
}
