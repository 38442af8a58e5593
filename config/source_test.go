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

// newFileSource returns a source for the file api-key of a new secret
// volume, holding content.
func newFileSource(t *testing.T, content string) (*gatewaytest.SecretVolume, *SecretSource) {
	t.Helper()
	vol := gatewaytest.NewSecretVolume(t, map[string]string{"api-key": content})
	s, err := NewSecretSource("", vol.Path("api-key"))
	if err != nil {
		t.Fatal(err)
	}
	return vol, s
}

// pollSource returns a function that polls s once and returns what Poll
// has reported so far.
func pollSource(s *SecretSource) func() (changes int, errs []error) {
	var n int
	var all []error
	return func() (int, []error) {
		s.Poll(func(changed bool, err error) {
			if changed {
				n++
			}
			if err != nil {
				all = append(all, err)
			}
		})
		return n, append([]error(nil), all...)
	}
}

func TestSecretSourceFixedValue(t *testing.T) {
	s, err := NewSecretSource("fixed-key", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Get().Reveal(); got != "fixed-key" {
		t.Errorf("Get %q; want fixed-key", got)
	}
	s.Poll(func(bool, error) { t.Error("a fixed value reported a reload") })
}

func TestSecretSourceUnusableFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": filepath.Join(dir, "missing"), "empty": empty} {
		t.Run(name, func(t *testing.T) {
			if s, err := NewSecretSource("", path); err == nil {
				t.Errorf("NewSecretSource(%s) = %v; want an error", name, s)
			}
		})
	}
}

// A rotation through the kubelet's `..data` swap is picked up by Watch
// without anything else happening; a swap to an empty file, or to a
// directory without the file, keeps the last good value and is reported
// once; a later good swap takes effect again.
func TestSecretSourceFollowsKubernetesRotation(t *testing.T) {
	vol, s := newFileSource(t, "key-one\n")
	if got := s.Get().Reveal(); got != "key-one" {
		t.Fatalf("Get %q; want key-one (trailing newline trimmed)", got)
	}
	reported := pollSource(s)

	vol.Update(map[string]string{"api-key": "key-two\n"})
	if reported(); s.Get().Reveal() != "key-two" {
		t.Fatalf("after a rotation Get %q; want key-two", s.Get().Reveal())
	}

	vol.Update(map[string]string{"api-key": ""})
	if _, errs := reported(); len(errs) != 1 {
		t.Fatalf("after an empty rotation: errors %v; want one", errs)
	}
	if got := s.Get().Reveal(); got != "key-two" {
		t.Errorf("after an empty rotation Get %q; want key-two, the last good value", got)
	}

	// `..data` pointing at a directory without the file: unreadable.
	if err := os.Mkdir(filepath.Join(vol.Dir(), "..2026_empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	vol.Point("..2026_empty")
	if _, errs := reported(); len(errs) != 2 {
		t.Fatalf("after an unreadable rotation: errors %v; want two", errs)
	}
	if got := s.Get().Reveal(); got != "key-two" {
		t.Errorf("after an unreadable rotation Get %q; want key-two", got)
	}

	vol.Update(map[string]string{"api-key": "key-three"})
	if reported(); s.Get().Reveal() != "key-three" {
		t.Fatalf("after a fix Get %q; want key-three", s.Get().Reveal())
	}
	changes, errs := reported()
	if changes != 2 || len(errs) != 2 {
		t.Errorf("Poll reported %d changes and errors %v; want 2 changes and 2 errors", changes, errs)
	}
	for _, err := range errs {
		for _, secret := range []string{"key-one", "key-two", "key-three"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows a secret", err)
			}
		}
	}
}

// Readers during a stream of rotations see only whole values, never an
// empty or partial one.
func TestSecretSourceGetDuringRotations(t *testing.T) {
	vol, s := newFileSource(t, "key-0000")
	stop := gatewaytest.Hammer(4, func(int) bool {
		if v := s.Get().Reveal(); len(v) != len("key-0000") || !strings.HasPrefix(v, "key-") {
			t.Errorf("Get %q during rotation", v)
			return false
		}
		return true
	})
	for i := 1; i <= 50; i++ {
		vol.Update(map[string]string{"api-key": fmt.Sprintf("key-%04d\n", i)})
		if _, err := s.file.Reload(); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	stop()
	if got := s.Get().Reveal(); got != "key-0050" {
		t.Errorf("Get %q after the last rotation; want key-0050", got)
	}
}

// A rotation to bytes that cannot work as a header value (NUL, a line
// break inside, a BOM or space inside, nothing) keeps the last good value
// and reports an error that names the file and says what is wrong, never
// quoting the content; a BOM before the value and a trailing CRLF are
// stripped.
func TestSecretSourceRefusesBadRotation(t *testing.T) {
	vol, s := newFileSource(t, "val-one\n")
	steps := []struct {
		name, content string
		wantErr       string // the error after the file's path; "" when the content is accepted
		value         string // Get after the step
	}{
		{"NUL", "val-\x00two\n", "holds a control character", "val-one"},
		{"CRLF inside", "val-two\r\nval-three\r\n", "holds more than one line", "val-one"},
		{"BOM before the value", "\ufeffval-four\r\n", "", "val-four"},
		{"BOM inside", "val-\ufefffive", "holds a non-ASCII character", "val-four"},
		{"space inside", "val six", "holds white space inside", "val-four"},
		{"only a BOM", "\ufeff\n", "is empty", "val-four"},
		{"fixed", "val-seven", "", "val-seven"},
	}
	for _, st := range steps {
		vol.Update(map[string]string{"api-key": st.content})
		changed, err := s.file.Reload()
		if st.wantErr == "" {
			if err != nil || !changed {
				t.Errorf("%s: Reload = %v, %v; want a change", st.name, changed, err)
			}
		} else {
			want := "parsing " + vol.Path("api-key") + ": " + st.wantErr
			if err == nil || err.Error() != want || changed {
				t.Errorf("%s: Reload = %v, %v; want the error %q", st.name, changed, err, want)
			}
		}
		if err != nil && strings.Contains(err.Error(), "val") {
			t.Errorf("%s: error %q quotes the content", st.name, err)
		}
		if got := s.Get().Reveal(); got != st.value {
			t.Errorf("%s: Get %q; want %q", st.name, got, st.value)
		}
	}
}

// Poll reports a bad rotation through its callback, which the
// process logs and counts, and keeps the last good value.
func TestSecretSourcePollReportsBadRotation(t *testing.T) {
	vol := gatewaytest.NewSecretVolume(t, map[string]string{"account-id": "acct-one"})
	s, err := NewSecretSource("", vol.Path("account-id"))
	if err != nil {
		t.Fatal(err)
	}
	reported := pollSource(s)
	vol.Update(map[string]string{"account-id": "acct-\x00two"})
	changes, errs := reported()
	if want := "parsing " + vol.Path("account-id") + ": holds a control character"; changes != 0 || errs[0].Error() != want {
		t.Errorf("reported %d changes and %v; want no change and %q", changes, errs, want)
	}
	if got := s.Get().Reveal(); got != "acct-one" {
		t.Errorf("Get %q; want acct-one, the last good value", got)
	}
}

// A source given the value Load read from its file does not read the file
// again to start: the value is in force at once, and the first poll of the
// same content reports nothing, while a later rotation is followed.
func TestSecretSourceStartsFromLoadedValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(path, []byte("key-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(map[string]string{EnvAPIKey: "", EnvAPIKeyFile: path}), "")
	if err != nil {
		t.Fatal(err)
	}
	// The file is away while the source is made: were it read again
	// there, NewSecretSource would fail.
	if err := os.Rename(path, path+".away"); err != nil {
		t.Fatal(err)
	}
	s, err := NewSecretSource(c.APIKey, c.APIKeyFile)
	if err != nil {
		t.Fatalf("NewSecretSource read the file again: %v", err)
	}
	if got := s.Get().Reveal(); got != "key-one" {
		t.Errorf("Get %q; want key-one", got)
	}
	if err := os.Rename(path+".away", path); err != nil {
		t.Fatal(err)
	}
	poll := pollSource(s)
	if changes, errs := poll(); changes != 0 || len(errs) != 0 {
		t.Errorf("first poll of the loaded content: %d changes, %v; want none", changes, errs)
	}
	if err := os.WriteFile(path, []byte("key-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if changes, errs := poll(); changes != 1 || len(errs) != 0 || s.Get().Reveal() != "key-two" {
		t.Errorf("after rotation: %d changes, %v, value %q; want one change to key-two", changes, errs, s.Get().Reveal())
	}
}
