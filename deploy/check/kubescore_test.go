package check

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// kubeScoreFailures renders dir and returns the ids of the kube-score checks
// that fail on it, by object name. Accepted findings are ignored per object
// with the kube-score/ignore annotation (see docs/operations.md).
func kubeScoreFailures(t *testing.T, dir string) map[string][]string {
	t.Helper()
	bin := requireTool(t, "kube-score", "go install github.com/zegl/kube-score/cmd/kube-score@v1.20.0")
	yaml, err := manifest.RenderYAML(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "score", "--output-format", "json", "-")
	cmd.Stdin = bytes.NewReader(yaml)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// kube-score exits 1 when a check fails; only output that does not
	// decode is an error.
	var objects []struct {
		ObjectName string `json:"object_name"`
		Checks     []struct {
			Check struct {
				ID string `json:"id"`
			} `json:"check"`
			Grade   int  `json:"grade"`
			Skipped bool `json:"skipped"`
		} `json:"checks"`
	}
	if jerr := json.Unmarshal(out, &objects); jerr != nil {
		t.Fatalf("kube-score: %v: %v\n%s", err, jerr, stderr.Bytes())
	}
	failures := make(map[string][]string)
	for _, o := range objects {
		for _, c := range o.Checks {
			// Grades: 1 critical, 5 warning, 7 almost OK, 10 OK.
			if !c.Skipped && c.Grade < 10 {
				failures[o.ObjectName] = append(failures[o.ObjectName], c.Check.ID)
			}
		}
	}
	return failures
}

// requireTool returns the path of the command name. Without it the test is
// skipped, except in CI, where a skipped check would hide what it checks;
// install says how to get it.
func requireTool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	switch {
	case err != nil && os.Getenv("CI") == "true":
		t.Fatalf("%s is not on PATH; CI must install it (%s)", name, install)
	case err != nil:
		t.Skipf("%s is not on PATH; install it (%s) to run this check", name, install)
	}
	return path
}
