package check

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// repoRoot is the repository root, relative to this package's directory.
const repoRoot = "../.."

// readDockerfile parses a Dockerfile with BuildKit's own parser and returns
// the stage that runs go build and the runtime stage (the last).
func readDockerfile(file string) (build, final instructions.Stage, err error) {
	f, err := os.Open(file)
	if err != nil {
		return build, final, err
	}
	defer f.Close()
	ast, err := parser.Parse(f)
	if err != nil {
		return build, final, err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return build, final, err
	}
	if len(stages) < 2 {
		return build, final, fmt.Errorf("got %d stages; want a multi-stage build", len(stages))
	}
	i := slices.IndexFunc(stages, func(s instructions.Stage) bool { return goBuild(s) != nil })
	if i < 0 || i == len(stages)-1 {
		return build, final, fmt.Errorf("no stage before the runtime stage runs go build")
	}
	return stages[i], stages[len(stages)-1], nil
}

// commands returns the commands of s of type T, in order, with their index.
func commands[T instructions.Command](s instructions.Stage) (cmds []T, at []int) {
	for i, c := range s.Commands {
		if t, ok := c.(T); ok {
			cmds, at = append(cmds, t), append(at, i)
		}
	}
	return cmds, at
}

// runIndex returns the index of the first RUN of s whose command line
// contains word, and the RUN, or -1 and nil.
func runIndex(s instructions.Stage, word string) (int, *instructions.RunCommand) {
	runs, at := commands[*instructions.RunCommand](s)
	for j, r := range runs {
		if strings.Contains(strings.Join(r.CmdLine, " "), word) {
			return at[j], r
		}
	}
	return -1, nil
}

func goBuild(s instructions.Stage) *instructions.RunCommand {
	_, r := runIndex(s, "go build ")
	return r
}

// copyIndex returns the index of the first COPY of s from the sources
// given to dest, or -1.
func copyIndex(s instructions.Stage, dest string, sources ...string) int {
	copies, at := commands[*instructions.CopyCommand](s)
	i := slices.IndexFunc(copies, func(c *instructions.CopyCommand) bool {
		return c.DestPath == dest && slices.Equal(c.SourcePaths, sources)
	})
	if i < 0 {
		return -1
	}
	return at[i]
}

// hasArg reports whether s declares the build argument name.
func hasArg(s instructions.Stage, name string) bool {
	args, _ := commands[*instructions.ArgCommand](s)
	return slices.ContainsFunc(args, func(a *instructions.ArgCommand) bool {
		return slices.ContainsFunc(a.Args, func(kv instructions.KeyValuePairOptional) bool { return kv.Key == name })
	})
}

// pinnedImage is an image reference with both a tag, for readers, and the
// digest that fixes its content.
var pinnedImage = regexp.MustCompile(`^[^@\s]+:[^@\s/]+@sha256:[0-9a-f]{64}$`)

// distrolessNonroot matches the distroless images whose default user is 65532.
var distrolessNonroot = regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:(debug-)?nonroot(@sha256:[0-9a-f]{64})?$`)

// imageUID returns the UID the final stage runs as, or -1 if unknown.
func imageUID(final instructions.Stage) int64 {
	uid := int64(-1)
	if distrolessNonroot.MatchString(final.BaseName) {
		uid = 65532
	}
	users, _ := commands[*instructions.UserCommand](final)
	for _, u := range users {
		user, _, _ := strings.Cut(u.User, ":")
		n, err := strconv.ParseInt(user, 10, 64)
		if err != nil {
			return -1 // a name: Kubernetes cannot verify runAsNonRoot
		}
		uid = n
	}
	return uid
}

// dockerfileRule is one invariant of the Dockerfile. check returns one line
// per problem.
type dockerfileRule struct {
	name  string
	check func(build, final instructions.Stage) []string
}

var dockerfileRules = []dockerfileRule{
	{"modules before sources", func(build, _ instructions.Stage) []string {
		mod := copyIndex(build, "./", "go.mod", "go.sum")
		download, _ := runIndex(build, "go mod download")
		src := copyIndex(build, ".", ".")
		if mod < 0 || download < 0 || src < 0 || !(mod < download && download < src) {
			return []string{fmt.Sprintf("got COPY go.mod go.sum at %d, go mod download at %d, COPY . . at %d; want them in that order", mod, download, src)}
		}
		return nil
	}},
	{"static, cross-compiled build with caches", func(build, _ instructions.Stage) []string {
		var problems []string
		if build.Platform != "$BUILDPLATFORM" {
			problems = append(problems, fmt.Sprintf("build stage FROM --platform=%q; want $BUILDPLATFORM, so that other targets cross-compile instead of running under emulation", build.Platform))
		}
		run := goBuild(build)
		line := strings.Join(run.CmdLine, " ")
		for _, want := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH",
			"-trimpath", "-s -w", "-X main.version=${VERSION}", "-o bin/gateway ."} {
			if !strings.Contains(line, want) {
				problems = append(problems, fmt.Sprintf("go build lacks %q", want))
			}
		}
		// The mounts' settings are read when BuildKit expands the RUN; no
		// variable is used in them, so expand each word to itself.
		if err := run.Expand(func(word string) (string, error) { return word, nil }); err != nil {
			return []string{err.Error()}
		}
		mounts := instructions.GetMounts(run)
		for _, target := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
			if !slices.ContainsFunc(mounts, func(m *instructions.Mount) bool { return m.Type == instructions.MountTypeCache && m.Target == target }) {
				problems = append(problems, fmt.Sprintf("go build has no cache mount on %s", target))
			}
		}
		for _, arg := range []string{"VERSION", "TARGETOS", "TARGETARCH"} {
			if !hasArg(build, arg) {
				problems = append(problems, "the build stage declares no ARG "+arg)
			}
		}
		return problems
	}},
	{"pinned base images", func(build, final instructions.Stage) []string {
		var problems []string
		for _, s := range []instructions.Stage{build, final} {
			if !pinnedImage.MatchString(s.BaseName) {
				problems = append(problems, fmt.Sprintf("FROM %s is not pinned: want <image>:<tag>@sha256:<digest>, so that the same Dockerfile builds on the same bases", s.BaseName))
			}
		}
		return problems
	}},
	{"runtime image", func(build, final instructions.Stage) []string {
		var problems []string
		copies, _ := commands[*instructions.CopyCommand](final)
		if build.Name == "" || !slices.ContainsFunc(copies, func(c *instructions.CopyCommand) bool { return c.From == build.Name }) {
			problems = append(problems, fmt.Sprintf("the runtime stage copies nothing from the build stage %q", build.Name))
		}
		if uid := imageUID(final); uid <= 0 {
			problems = append(problems, fmt.Sprintf("runtime stage (FROM %s) runs as uid %d; want a numeric non-root USER or a distroless nonroot image", final.BaseName, uid))
		}
		entrypoints, _ := commands[*instructions.EntrypointCommand](final)
		switch n := len(entrypoints); {
		case n == 0:
			return append(problems, "no ENTRYPOINT in the runtime stage")
		case entrypoints[n-1].PrependShell:
			return append(problems, fmt.Sprintf("%s is not exec form (a JSON array); the image has no shell", entrypoints[n-1]))
		case !slices.ContainsFunc(copies, func(c *instructions.CopyCommand) bool { return c.DestPath == entrypoints[n-1].CmdLine[0] }):
			problems = append(problems, fmt.Sprintf("ENTRYPOINT runs %s, which no COPY puts in the image", entrypoints[n-1].CmdLine[0]))
		}
		if cmds, _ := commands[*instructions.CmdCommand](final); len(cmds) > 0 {
			problems = append(problems, "CMD in the runtime stage: arguments belong in the manifests")
		}
		return problems
	}},
	{"ports and labels", func(_, final instructions.Stage) []string {
		var ports, labels []string
		exposes, _ := commands[*instructions.ExposeCommand](final)
		for _, e := range exposes {
			ports = append(ports, e.Ports...)
		}
		labelCmds, _ := commands[*instructions.LabelCommand](final)
		for _, l := range labelCmds {
			for _, kv := range l.Labels {
				labels = append(labels, kv.Key)
			}
		}
		var problems []string
		for _, want := range []string{"8080", "9090"} {
			if !slices.Contains(ports, want) && !slices.Contains(ports, want+"/tcp") {
				problems = append(problems, fmt.Sprintf("got EXPOSE %v; want %s (the contract's default listeners)", ports, want))
			}
		}
		for _, want := range []string{"title", "source", "version", "revision", "created"} {
			if !slices.Contains(labels, "org.opencontainers.image."+want) {
				problems = append(problems, fmt.Sprintf("no org.opencontainers.image.%s label", want))
			}
		}
		return problems
	}},
}

func TestDockerfile(t *testing.T) {
	build, final, err := readDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range dockerfileRules {
		t.Run(rule.name, func(t *testing.T) {
			for _, p := range rule.check(build, final) {
				t.Error(p)
			}
		})
	}

	t.Run("manifests run as the image's user", func(t *testing.T) {
		uid := imageUID(final)
		for _, overlay := range overlayDirs(t, deployDir) {
			objs, err := manifest.Render(overlay)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range typedObjects[*appsv1.Deployment](objs) {
				var u *int64
				if sc := d.Spec.Template.Spec.SecurityContext; sc != nil {
					u = sc.RunAsUser
				}
				if u == nil || *u != uid {
					t.Errorf("%s: Deployment/%s runAsUser %s; the image runs as %d", filepath.Base(overlay), d.Name, ptrString(u), uid)
				}
			}
		}
	})
}

// TestDockerfileChecksCatchBrokenFiles proves that the Dockerfile rules fail:
// each case breaks a copy of the Dockerfile in one way.
func TestDockerfileChecksCatchBrokenFiles(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	const build = "static, cross-compiled build with caches"
	cases := []struct {
		name, old, new string
		rule, want     string // rule empty: readDockerfile fails; want empty: no problem
	}{
		{"single stage", "\nFROM gcr.io/distroless/static:nonroot@", "\nCOPY x y\n#", "", "want a multi-stage build"},
		{"sources before modules", "COPY go.mod go.sum ./", "COPY . .\nCOPY go.mod go.sum ./", "modules before sources", "want them in that order"},
		{"cgo on", "CGO_ENABLED=0 ", "", build, `lacks "CGO_ENABLED=0"`},
		{"no trimpath", "-trimpath ", "", build, `lacks "-trimpath"`},
		{"built under emulation", "FROM --platform=$BUILDPLATFORM golang", "FROM golang", build, "want $BUILDPLATFORM"},
		{"no build cache", "--mount=type=cache,target=/root/.cache/go-build", "", build, "no cache mount on /root/.cache/go-build"},
		{"runs as root", "USER 65532:65532", "USER 0", "runtime image", "runs as uid 0"},
		{"user by name", "USER 65532:65532", "USER nonroot", "runtime image", "runs as uid -1"},
		{"root runtime image", "\nFROM gcr.io/distroless/static:nonroot@", "\nFROM gcr.io/distroless/static@", "runtime image", ""}, // USER 65532 still applies
		{"shell-form entrypoint", `ENTRYPOINT ["/gateway"]`, "ENTRYPOINT /gateway", "runtime image", "is not exec form"},
		{"floating base image", "golang:1.26@sha256:", "golang:1.26@sha256:0", "pinned base images", "is not pinned"},
		{"no revision label", `org.opencontainers.image.revision="${REVISION}"`, `org.opencontainers.image.vendor="bluetape"`, "ports and labels", "no org.opencontainers.image.revision label"},
		{"admin port not exposed", "EXPOSE 8080 9090", "EXPOSE 8080", "ports and labels", "want 9090"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(orig), tc.old) {
				t.Fatalf("the Dockerfile no longer contains %q; update this case", tc.old)
			}
			file := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(file, []byte(strings.Replace(string(orig), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			build, final, err := readDockerfile(file)
			if tc.rule == "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got %v; want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(dockerfileRules, func(r dockerfileRule) bool { return r.name == tc.rule })
			got := dockerfileRules[i].check(build, final)
			if tc.want == "" && len(got) > 0 || tc.want != "" && !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("got %q; want a problem containing %q (none if empty)", got, tc.want)
			}
		})
	}
}

// readDockerignore returns Docker's own matcher for a .dockerignore file.
func readDockerignore(file string) (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return patternmatcher.New(patterns)
}

// TestDockerignore checks with Docker's own .dockerignore matcher that the
// build context holds what the build needs and no secrets or other trees.
func TestDockerignore(t *testing.T) {
	pm, err := readDockerignore(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"go.mod": false, "go.sum": false, "main.go": false, "config/config.go": false, "proxy/x.go": false, "metrics/x.go": false,
		".git/config": true, "bin/gateway": true, ".env": true, "deploy/check/go.mod": true,
	} {
		if got, err := pm.MatchesOrParentMatches(name); err != nil || got != want {
			t.Errorf("%s excluded from the build context: %v (%v); want %v", name, got, err, want)
		}
	}
}
