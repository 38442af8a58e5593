package gatewaytest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// SecretVolume is a directory laid out as the kubelet mounts a Secret or
// a ConfigMap: the files live in a timestamped directory such as
// ..2026_01_01_00_00_01.000000001, the link ..data points to it, and each
// visible name is a link through ..data. An update writes a new
// timestamped directory and swaps ..data to it with a rename, so that a
// reader sees either all the old files or all the new ones.
type SecretVolume struct {
	t   testing.TB
	dir string
	gen int
}

// NewSecretVolume lays out files, a map from name to content, in a new
// temporary directory that is removed when the test ends. The visible
// names are those of files; Update changes their content, not the set of
// names. NewSecretVolume fails the test on any error.
func NewSecretVolume(t testing.TB, files map[string]string) *SecretVolume {
	t.Helper()
	v := &SecretVolume{t: t, dir: t.TempDir()}
	v.Update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), v.Path(name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// Dir returns the volume's directory, where a pod has it mounted.
func (v *SecretVolume) Dir() string { return v.dir }

// Path returns the visible path of the file name, the one a program is
// given.
func (v *SecretVolume) Path(name string) string { return filepath.Join(v.dir, name) }

// Update replaces the volume's content as the kubelet does: it writes
// files into a new timestamped directory and points ..data at it, as
// Point does. A visible name left out of files no longer resolves.
// Update fails the test on any error.
func (v *SecretVolume) Update(files map[string]string) {
	v.t.Helper()
	v.gen++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%09d", v.gen, v.gen)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		v.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), []byte(content), 0o644); err != nil {
			v.t.Fatal(err)
		}
	}
	v.Point(ts)
}

// Point swaps ..data to target, a directory inside Dir named relative to
// it, with a temporary link renamed over ..data, then removes the
// directory ..data pointed to before. It lets a test publish a directory
// it made itself, such as one without a file. Point fails the test on any
// error.
func (v *SecretVolume) Point(target string) {
	v.t.Helper()
	data := filepath.Join(v.dir, "..data")
	old, _ := os.Readlink(data) // empty while the volume is being laid out
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(target, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		v.t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			v.t.Fatal(err)
		}
	}
}
