package gatewaytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// LogBuffer collects what a logger or a process writes while a test reads
// it. It is safe for concurrent use; its zero value is an empty buffer
// ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer. It never returns an error.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Records returns, in the order they were written, the lines of JSON
// log output whose "msg" field is msg, each decoded into a map. Lines that
// are not JSON objects are skipped.
func (b *LogBuffer) Records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v map[string]any
		if json.Unmarshal(sc.Bytes(), &v) == nil && v["msg"] == msg {
			out = append(out, v)
		}
	}
	return out
}

// JSONLines decodes s, JSON log output, one object per line, failing the
// test on a line that is not a JSON object.
func JSONLines(t testing.TB, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not a JSON object: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// NoSecret fails the test if text, found at where, holds one of secrets
// or its last 16 characters, a piece long enough to identify it.
func NoSecret(t testing.TB, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, piece := range []string{s, s[max(len(s)-16, 0):]} {
			if strings.Contains(text, piece) {
				t.Errorf("%s holds a credential (%q):\n%s", where, piece, text)
				return
			}
		}
	}
}
