package bluetape

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/bluetape/bluetapetest"
)

func fixed(values ...string) func() []string { return func() []string { return values } }

func TestRedact(t *testing.T) {
	cases := map[string]struct {
		values   []string
		in, want string
	}{
		"nothing to redact":  {[]string{testKey, testAccount}, "upstream answered 500", "upstream answered 500"},
		"empty text":         {[]string{testKey}, "", ""},
		"key":                {[]string{testKey, testAccount}, "Invalid key " + testKey + ".", "Invalid key [redacted]."},
		"both":               {[]string{testKey, testAccount}, testAccount + "/" + testKey, "[redacted]/[redacted]"},
		"each occurrence":    {[]string{testKey}, testKey + testKey + " " + testKey, "[redacted] [redacted]"},
		"adjacent values":    {[]string{testKey, testAccount}, "<" + testKey + testAccount + ">", "<[redacted]>"},
		"overlapping values": {[]string{"abcd", "cdef"}, "xabcdefx", "x[redacted]x"},
		"overlapping self":   {[]string{"aa"}, "aaa b", "[redacted] b"},
		"case-sensitive":     {[]string{testKey}, strings.ToUpper(testKey), strings.ToUpper(testKey)},
		"prefix only":        {[]string{testKey}, testKey[:10], testKey[:10]},
		"empty value":        {[]string{"", testAccount}, "a " + testAccount, "a [redacted]"},
		"no values":          {nil, "a " + testAccount, "a " + testAccount},
		"Go-quoted":          {[]string{`k"3\b`}, `missing colon: "X-Bad k\"3\\b"`, `missing colon: "X-Bad [redacted]"`},
		"raw and Go-quoted":  {[]string{`k"3\b`}, `k"3\b and "k\"3\\b"`, `[redacted] and "[redacted]"`},
		"JSON-escaped":       {[]string{"k<3&"}, `{"reason":"k\u003c3\u0026"}`, `{"reason":"[redacted]"}`},
		"one character":      {[]string{"7"}, "id 1779", "id 1[redacted]9"},
		// A value that starts with the marker's end would reappear
		// across the marker's edge: "]xx" → "[redacted]x" holds "]x".
		"across the marker's end":   {[]string{"]x"}, "a]xx]xb", "a[redacted]b"},
		"across the marker's start": {[]string{"y["}, "ay[y[[b", "a[redacted][b"},
		"value holds the marker":    {[]string{"<[redacted]>", "q"}, "<q>", "[redacted]"},
		// A value inside the marker would show in every marker.
		"value inside the marker": {[]string{"act"}, "react", "re[REDACTED]"},
		"bracket":                 {[]string{"["}, "a[b", "ab"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := NewRedactor(fixed(tc.values...))
			if got := r.Redact(tc.in); got != tc.want {
				t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestRedactCostsNothingWhenClean: the common case, a text with no
// credential, allocates nothing.
func TestRedactCostsNothingWhenClean(t *testing.T) {
	values := []string{testKey, testAccount}
	r := NewRedactor(func() []string { return values })
	text := `Get "http://bluetape.internal/integration/customer/c1/signup": dial tcp: connection refused`
	if n := testing.AllocsPerRun(100, func() { _ = r.Redact(text) }); n != 0 {
		t.Errorf("Redact of a clean text allocates %v times; want 0", n)
	}
}

// TestRedactFollowsRotation: values are read on every use, so a rotated
// credential is redacted from then on.
func TestRedactFollowsRotation(t *testing.T) {
	var mu sync.Mutex
	current := []string{"key-one", testAccount}
	r := NewRedactor(func() []string {
		mu.Lock()
		defer mu.Unlock()
		return current
	})
	if got := r.Redact("key-one key-two"); got != "[redacted] key-two" {
		t.Errorf("before rotation: %q", got)
	}
	mu.Lock()
	current = []string{"key-two", testAccount}
	mu.Unlock()
	if got := r.Redact("key-one key-two"); got != "key-one [redacted]" {
		t.Errorf("after rotation: %q", got)
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("upstream said %d", e.code) }

func TestRedactError(t *testing.T) {
	r := NewRedactor(fixed(testKey, testAccount))
	if r.RedactError(nil) != nil {
		t.Error("RedactError(nil) is not nil")
	}
	clean := errors.New("connection refused")
	if got := r.RedactError(clean); got != clean {
		t.Errorf("a clean error came back as %v; want the same error", got)
	}

	cause := &statusError{400}
	err := fmt.Errorf("upstream reason %q: %w", "bad key "+testKey, cause)
	red := r.RedactError(err)
	if want := `upstream reason "bad key [redacted]": upstream said 400`; red.Error() != want {
		t.Errorf("got  %q\nwant %q", red, want)
	}
	if !errors.Is(red, err) || !errors.Is(red, cause) {
		t.Error("errors.Is does not see through the redacted error")
	}
	var se *statusError
	if !errors.As(red, &se) || se.code != 400 {
		t.Error("errors.As does not see through the redacted error")
	}
	for _, format := range []string{"%v", "%s", "%q", "%+v"} {
		if s := fmt.Sprintf(format, red); strings.Contains(s, testKey) {
			t.Errorf("%s shows the key: %s", format, s)
		}
	}
	// As a log field: slog writes an error's Error().
	js, _ := json.Marshal(map[string]string{"error": red.Error()})
	if strings.Contains(string(js), testKey) {
		t.Errorf("log field shows the key: %s", js)
	}
}

// TestRedactErrorKeepsRotatedOutValue: the text is redacted when the
// error is wrapped, so a credential rotated out before the error is
// written down does not reappear.
func TestRedactErrorKeepsRotatedOutValue(t *testing.T) {
	var mu sync.Mutex
	current := "key-one"
	r := NewRedactor(func() []string {
		mu.Lock()
		defer mu.Unlock()
		return []string{current}
	})
	red := r.RedactError(errors.New("bad key-one"))
	mu.Lock()
	current = "key-two"
	mu.Unlock()
	if got := red.Error(); got != "bad [redacted]" {
		t.Errorf("got %q; want %q", got, "bad [redacted]")
	}
}

// TestTransportErrorsQuoteTheUpstream shows that net/http's own errors
// carry what a broken upstream sent (here, the credentials it was sent),
// and that the Redactor takes them out while errors.As still finds the
// *url.Error.
func TestTransportErrorsQuoteTheUpstream(t *testing.T) {
	const quotingKey = `k"3\b-9f1d2e8c` // visible ASCII that %q escapes
	cases := map[string]struct {
		key, answer, shown string
	}{
		"header line without a colon": {testKey, bluetapetest.HeaderLineAnswer("X-Bad " + testKey), testKey},
		"header line, quoted key":     {quotingKey, bluetapetest.HeaderLineAnswer("X-Bad " + quotingKey), `k\"3\\b-9f1d2e8c`},
		"Content-Length":              {testKey, bluetapetest.ContentLengthAnswer(testAccount), testAccount},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			up := bluetapetest.NewRawUpstream(t, tc.answer)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			resp, err := client.Get(up.URL + "/integration/customer/c1/signup")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t.Fatalf("the transport accepted %q", tc.answer)
			}
			if up.Requests() != 1 {
				t.Errorf("upstream read %d requests; want 1", up.Requests())
			}
			if !strings.Contains(err.Error(), tc.shown) {
				t.Fatalf("transport error %q does not show %q: nothing to redact here", err, tc.shown)
			}
			red := NewRedactor(fixed(tc.key, testAccount)).RedactError(err)
			if strings.Contains(red.Error(), tc.shown) || strings.Contains(red.Error(), tc.key) || strings.Contains(red.Error(), testAccount) {
				t.Errorf("redacted error still shows a credential: %q", red)
			}
			if !strings.Contains(red.Error(), Redacted) {
				t.Errorf("redacted error %q has no marker", red)
			}
			var ue *url.Error
			if !errors.As(red, &ue) {
				t.Errorf("errors.As(%T) finds no *url.Error", red)
			}
		})
	}
}

// BenchmarkRedact measures the cost the Redactor adds to every logged
// error: the clean case is the common one.
func BenchmarkRedact(b *testing.B) {
	r := NewRedactor(fixed(testKey, testAccount))
	for name, text := range map[string]string{
		"clean": `Get "http://bluetape.internal/integration/customer/c1/signup": dial tcp 10.0.0.7:443: connect: connection refused`,
		"key":   `Get "http://bluetape.internal/integration/customer/c1/signup": net/http: HTTP/1.x transport connection broken: malformed MIME header: missing colon: "X-Bad ` + testKey + `"`,
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Redact(text)
			}
		})
	}
}
