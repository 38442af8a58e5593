package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// watchParse accepts any content but one starting with "bad".
func watchParse(data []byte) (string, error) {
	if strings.HasPrefix(string(data), "bad") {
		return "", errors.New("content is bad")
	}
	return string(data), nil
}

func writeWatchFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newWatchedOne watches a new file holding "one" and returns its path.
func newWatchedOne(t *testing.T) (string, *Watched[string]) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callers.yaml")
	writeWatchFile(t, path, "one")
	w, err := NewWatched(path, watchParse)
	if err != nil {
		t.Fatal(err)
	}
	return path, w
}

type reloadResult struct {
	changed bool
	err     bool
}

func reload[T any](t *testing.T, w *Watched[T]) reloadResult {
	t.Helper()
	changed, err := w.Reload()
	return reloadResult{changed, err != nil}
}

func TestNewWatchedErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewWatched(filepath.Join(dir, "missing"), watchParse); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v; want a not-exist error", err)
	}
	bad := filepath.Join(dir, "bad")
	writeWatchFile(t, bad, "bad content")
	if _, err := NewWatched(bad, watchParse); err == nil || err.Error() != "content is bad" {
		t.Errorf("bad file: got %v; want the parser's error", err)
	}
}

// TestWatchedReload walks a file through good, unchanged, bad, repeated
// bad, fixed, removed and restored content.
func TestWatchedReload(t *testing.T) {
	path, w := newWatchedOne(t)
	if w.Path() != path {
		t.Errorf("Path %q; want %q", w.Path(), path)
	}
	steps := []struct {
		name    string
		content string // written before Reload; "-" removes the file, "" leaves it
		want    reloadResult
		value   string
	}{
		{"unchanged", "", reloadResult{}, "one"},
		{"changed", "two", reloadResult{changed: true}, "two"},
		{"rewritten with the same content", "two", reloadResult{}, "two"},
		{"bad content keeps the last good value", "bad three", reloadResult{err: true}, "two"},
		{"the same bad content is reported once", "", reloadResult{}, "two"},
		{"other bad content is reported", "bad four", reloadResult{err: true}, "two"},
		{"fixed", "five", reloadResult{changed: true}, "five"},
		{"removed file keeps the last good value", "-", reloadResult{err: true}, "five"},
		{"still removed is reported once", "", reloadResult{}, "five"},
		{"restored with the same content", "five", reloadResult{}, "five"},
		{"bad after the last good content", "bad six", reloadResult{err: true}, "five"},
		{"back to the last good content", "five", reloadResult{}, "five"},
		{"bad six again is reported again", "bad six", reloadResult{err: true}, "five"},
	}
	for _, s := range steps {
		switch s.content {
		case "":
		case "-":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		default:
			writeWatchFile(t, path, s.content)
		}
		if got := reload(t, w); got != s.want {
			t.Errorf("%s: Reload reported %+v; want %+v", s.name, got, s.want)
		}
		if got := w.Get(); got != s.value {
			t.Errorf("%s: Get %q; want %q", s.name, got, s.value)
		}
	}
}

func TestWatchedReloadErrorNamesTheFile(t *testing.T) {
	path, w := newWatchedOne(t)
	writeWatchFile(t, path, "bad")
	_, err := w.Reload()
	if want := "parsing " + path + ": content is bad"; err == nil || err.Error() != want {
		t.Errorf("got %v; want %q", err, want)
	}
	os.Remove(path)
	_, err = w.Reload()
	if err == nil || !strings.HasPrefix(err.Error(), "reading "+path+": ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v; want a reading error naming %s", err, path)
	}
}

// TestWatchedFollowsKubernetesSwap updates a file the way the kubelet
// updates a mounted Secret: the visible path never changes, ..data does.
func TestWatchedFollowsKubernetesSwap(t *testing.T) {
	m := gatewaytest.NewSecretVolume(t, map[string]string{"callers.yaml": "one"})
	w, err := NewWatched(m.Path("callers.yaml"), watchParse)
	if err != nil {
		t.Fatal(err)
	}
	m.Update(map[string]string{"callers.yaml": "two"})
	if got := reload(t, w); got != (reloadResult{changed: true}) {
		t.Fatalf("Reload after swap reported %+v; want changed", got)
	}
	if got := w.Get(); got != "two" {
		t.Fatalf("Get %q; want %q", got, "two")
	}
	m.Update(map[string]string{"callers.yaml": "bad three"})
	if got := reload(t, w); got != (reloadResult{err: true}) {
		t.Fatalf("Reload after a bad swap reported %+v; want an error", got)
	}
	if got := w.Get(); got != "two" {
		t.Fatalf("Get %q after a bad swap; want %q", got, "two")
	}
}

// Poll reports a swap, a bad swap and a fix, each once, and nothing when
// the file did not change.
func TestWatchedPoll(t *testing.T) {
	m := gatewaytest.NewSecretVolume(t, map[string]string{"callers.yaml": "one"})
	w, err := NewWatched(m.Path("callers.yaml"), watchParse)
	if err != nil {
		t.Fatal(err)
	}
	type report struct {
		changed bool
		err     error
	}
	poll := func() []report {
		var got []report
		w.Poll(func(changed bool, err error) { got = append(got, report{changed, err}) })
		return got
	}
	if r := poll(); len(r) != 0 {
		t.Fatalf("unchanged file: reports %+v; want none", r)
	}
	m.Update(map[string]string{"callers.yaml": "two"})
	if r := poll(); len(r) != 1 || !r[0].changed || r[0].err != nil || w.Get() != "two" {
		t.Fatalf("after swap: reports %+v, Get %q; want one change to two", r, w.Get())
	}
	m.Update(map[string]string{"callers.yaml": "bad"})
	if r := poll(); len(r) != 1 || r[0].changed || r[0].err == nil || w.Get() != "two" {
		t.Fatalf("after bad swap: reports %+v, Get %q; want one error, still two", r, w.Get())
	}
	if r := poll(); len(r) != 0 {
		t.Fatalf("same bad content again: reports %+v; want none", r)
	}
	m.Update(map[string]string{"callers.yaml": "three"})
	if r := poll(); len(r) != 1 || !r[0].changed || r[0].err != nil || w.Get() != "three" {
		t.Fatalf("after fix: reports %+v, Get %q; want one change to three", r, w.Get())
	}
}

// TestWatchedGetDuringReload reads the value from several goroutines
// while the file changes under Reload; run with -race.
func TestWatchedGetDuringReload(t *testing.T) {
	m := gatewaytest.NewSecretVolume(t, map[string]string{"callers.yaml": "v0"})
	w, err := NewWatched(m.Path("callers.yaml"), watchParse)
	if err != nil {
		t.Fatal(err)
	}
	stop := gatewaytest.Hammer(4, func(int) bool {
		if v := w.Get(); !strings.HasPrefix(v, "v") {
			t.Errorf("Get %q: not a value the file held", v)
			return false
		}
		return true
	})
	for i := 1; i <= 8; i++ {
		m.Update(map[string]string{"callers.yaml": fmt.Sprintf("v%d", i)})
		if _, err := w.Reload(); err != nil {
			t.Error(err)
		}
	}
	stop()
	if got := w.Get(); got != "v8" {
		t.Errorf("Get %q; want v8", got)
	}
}
