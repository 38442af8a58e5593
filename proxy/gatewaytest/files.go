package gatewaytest

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFiles writes files, a map from a slash-separated path relative to
// dir to content, creating the directories they need, readable by their
// owner only. It fails the test on any error.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TempFile writes content to a file name in a new temporary directory,
// removed when the test ends, and returns its path. It fails the test on
// any error.
func TempFile(t testing.TB, name, content string) string {
	t.Helper()
	dir := t.TempDir()
	WriteFiles(t, dir, map[string]string{name: content})
	return filepath.Join(dir, name)
}
