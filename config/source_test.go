package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

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
