package check

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// deployDir is deploy/, relative to this package's directory.
const deployDir = ".."

// overlayDirs lists every overlay under dir/overlays: each is a directory
// that "kubectl apply -k" is meant to be run on.
func overlayDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(dir, "overlays", e.Name()))
		}
	}
	if len(dirs) == 0 {
		t.Fatalf("no overlays under %s", dir)
	}
	return dirs
}

// exampleSecrets renders dir/examples and returns its Secrets by name. The
// examples document the keys that the real Secrets must have.
func exampleSecrets(t *testing.T, dir string) map[string]*corev1.Secret {
	t.Helper()
	objs, err := manifest.Render(filepath.Join(dir, "examples"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := make(map[string]*corev1.Secret)
	for _, s := range typedObjects[*corev1.Secret](objs) {
		secrets[s.Name] = s
	}
	return secrets
}

// renderForChecks renders one overlay into the form the rules take.
func renderForChecks(t *testing.T, dir, overlay string, examples map[string]*corev1.Secret) *rendered {
	t.Helper()
	objs, err := manifest.Render(overlay)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(dir, "monitoring", "kustomization.yaml"))
	return &rendered{
		objects:    objs,
		examples:   examples,
		monitoring: err == nil,
	}
}

// TestDeployManifests renders every overlay and runs every rule on it. A
// failure reads "TestDeployManifests/<overlay>/<rule>" and names the object.
func TestDeployManifests(t *testing.T) {
	examples := exampleSecrets(t, deployDir)
	for _, overlay := range overlayDirs(t, deployDir) {
		t.Run(filepath.Base(overlay), func(t *testing.T) {
			r := renderForChecks(t, deployDir, overlay, examples)
			for _, rule := range deployRules {
				t.Run(rule.name, func(t *testing.T) {
					for _, p := range rule.check(r) {
						t.Error(p)
					}
				})
			}
		})
	}
}

// TestDeployRulesAreNamedOnce keeps rule names usable as subtest names.
func TestDeployRulesAreNamedOnce(t *testing.T) {
	var names []string
	for _, rule := range deployRules {
		if slices.Contains(names, rule.name) {
			t.Errorf("rule %q is listed twice", rule.name)
		}
		names = append(names, rule.name)
	}
}
