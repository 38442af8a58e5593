package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// repoRoot is the repository root, relative to this package's directory.
const repoRoot = "../.."

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case, e.g. "RUN"
	args string
	line int
}

// stage is one FROM and the instructions that follow it.
type stage struct {
	from     string // the image
	platform string // the --platform flag of FROM, if any
	name     string // the AS name, if any
	insts    []instruction
}

// parseDockerfile splits a Dockerfile into stages. It knows enough of the
// syntax for the checks: comments, line continuations and FROM ... AS name.
func parseDockerfile(file string) ([]stage, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var insts []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comments inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		insts = append(insts, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var stages []stage
	for _, in := range insts {
		if in.cmd == "FROM" {
			var platform string
			fields := slices.DeleteFunc(strings.Fields(in.args), func(s string) bool {
				if p, ok := strings.CutPrefix(s, "--platform="); ok {
					platform = p
				}
				return strings.HasPrefix(s, "--")
			})
			if len(fields) == 0 {
				return nil, fmt.Errorf("%s:%d: FROM without an image", file, in.line)
			}
			s := stage{from: fields[0], platform: platform}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		stages[len(stages)-1].insts = append(stages[len(stages)-1].insts, in)
	}
	return stages, nil
}

// find returns the index of the first instruction of s matching cmd and
// args (a regular expression), or -1.
func (s stage) find(cmd, args string) int {
	re := regexp.MustCompile(args)
	return slices.IndexFunc(s.insts, func(in instruction) bool { return in.cmd == cmd && re.MatchString(in.args) })
}

// distrolessNonroot matches the distroless images whose default user is 65532.
// pinnedImage is an image reference with both a tag, for readers, and the
// digest that fixes its content.
var pinnedImage = regexp.MustCompile(`^[^@\s]+:[^@\s/]+@sha256:[0-9a-f]{64}$`)

var distrolessNonroot = regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:(debug-)?nonroot(@sha256:[0-9a-f]{64})?$`)

// imageUID returns the UID the final stage runs as, or -1 if unknown.
func imageUID(final stage) int64 {
	uid := int64(-1)
	if distrolessNonroot.MatchString(final.from) {
		uid = 65532
	}
	for _, in := range final.insts {
		if in.cmd == "USER" {
			user, _, _ := strings.Cut(in.args, ":")
			n, err := strconv.ParseInt(user, 10, 64)
			if err != nil {
				return -1 // a name: Kubernetes cannot verify runAsNonRoot
			}
			uid = n
		}
	}
	return uid
}

// dockerfileRule is one invariant of the Dockerfile. check returns one line
// per problem.
type dockerfileRule struct {
	name  string
	check func(build, final stage) []string
}

var dockerfileRules = []dockerfileRule{
	{"modules before sources", func(build, _ stage) []string {
		mod := build.find("COPY", `^go\.mod go\.sum \./?$`)
		download := build.find("RUN", `^(--mount=\S+ +)*go mod download\b`)
		src := build.find("COPY", `^\. \.$`)
		if mod < 0 || download < 0 || src < 0 || !(mod < download && download < src) {
			return []string{fmt.Sprintf("got COPY go.mod go.sum at %d, go mod download at %d, COPY . . at %d; want them in that order", mod, download, src)}
		}
		return nil
	}},
	{"static build", func(build, _ stage) []string {
		var problems []string
		in := build.insts[build.find("RUN", `\bgo build\b`)]
		if !strings.Contains(in.args, "CGO_ENABLED=0") && build.find("ENV", `\bCGO_ENABLED=0\b`) < 0 {
			problems = append(problems, fmt.Sprintf("line %d: go build without CGO_ENABLED=0", in.line))
		}
		for _, want := range []string{"-trimpath", "-s -w", "-X main.version=${VERSION}", "-o bin/gateway ."} {
			if !strings.Contains(in.args, want) {
				problems = append(problems, fmt.Sprintf("line %d: go build lacks %q", in.line, want))
			}
		}
		if build.find("ARG", `^VERSION\b`) < 0 {
			problems = append(problems, "the build stage declares no ARG VERSION")
		}
		return problems
	}},
	{"cross-compiled with caches", func(build, _ stage) []string {
		var problems []string
		if build.platform != "$BUILDPLATFORM" {
			problems = append(problems, fmt.Sprintf("build stage FROM --platform=%q; want $BUILDPLATFORM, so that other targets cross-compile instead of running under emulation", build.platform))
		}
		in := build.insts[build.find("RUN", `\bgo build\b`)]
		for _, want := range []string{"GOOS=$TARGETOS", "GOARCH=$TARGETARCH",
			"--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build"} {
			if !strings.Contains(in.args, want) {
				problems = append(problems, fmt.Sprintf("line %d: go build lacks %q", in.line, want))
			}
		}
		for _, arg := range []string{"TARGETOS", "TARGETARCH"} {
			if build.find("ARG", `^`+arg+`$`) < 0 {
				problems = append(problems, "the build stage declares no ARG "+arg)
			}
		}
		return problems
	}},
	{"pinned base images", func(build, final stage) []string {
		var problems []string
		for _, s := range []stage{build, final} {
			if !pinnedImage.MatchString(s.from) {
				problems = append(problems, fmt.Sprintf("FROM %s is not pinned: want <image>:<tag>@sha256:<digest>, so that the same Dockerfile builds on the same bases", s.from))
			}
		}
		return problems
	}},
	{"runtime image", func(build, final stage) []string {
		var problems []string
		if build.name == "" || final.find("COPY", `^--from=`+regexp.QuoteMeta(build.name)+` `) < 0 {
			problems = append(problems, fmt.Sprintf("the runtime stage copies nothing from the build stage %q", build.name))
		}
		if uid := imageUID(final); uid <= 0 {
			problems = append(problems, fmt.Sprintf("runtime stage (FROM %s) runs as uid %d; want a numeric non-root USER or a distroless nonroot image", final.from, uid))
		}
		return problems
	}},
	{"exec-form entrypoint", func(_, final stage) []string {
		i := final.find("ENTRYPOINT", ``)
		if i < 0 {
			return []string{"no ENTRYPOINT in the runtime stage"}
		}
		var argv []string
		if err := json.Unmarshal([]byte(final.insts[i].args), &argv); err != nil || len(argv) == 0 {
			return []string{fmt.Sprintf("ENTRYPOINT %s is not exec form (a JSON array); the image has no shell", final.insts[i].args)}
		}
		var problems []string
		if final.find("COPY", `\s`+regexp.QuoteMeta(argv[0])+`$`) < 0 {
			problems = append(problems, fmt.Sprintf("ENTRYPOINT runs %s, which no COPY puts in the image", argv[0]))
		}
		if final.find("CMD", ``) >= 0 {
			problems = append(problems, "CMD in the runtime stage: arguments belong in the manifests")
		}
		return problems
	}},
	{"exposed ports", func(_, final stage) []string {
		var ports []string
		for _, in := range final.insts {
			if in.cmd == "EXPOSE" {
				ports = append(ports, strings.Fields(in.args)...)
			}
		}
		var problems []string
		for _, want := range []string{"8080", "9090"} {
			if !slices.Contains(ports, want) && !slices.Contains(ports, want+"/tcp") {
				problems = append(problems, fmt.Sprintf("got EXPOSE %v; want %s (the contract's default listeners)", ports, want))
			}
		}
		return problems
	}},
	{"oci labels", func(_, final stage) []string {
		var labels string
		for _, in := range final.insts {
			if in.cmd == "LABEL" {
				labels += " " + in.args
			}
		}
		var problems []string
		for _, want := range []string{"title", "source", "version", "revision", "created"} {
			if !strings.Contains(labels, "org.opencontainers.image."+want+"=") {
				problems = append(problems, fmt.Sprintf("no org.opencontainers.image.%s label", want))
			}
		}
		return problems
	}},
}

// buildAndFinal returns the stage that runs go build and the runtime stage.
func buildAndFinal(stages []stage) (build, final stage, err error) {
	if len(stages) < 2 {
		return stage{}, stage{}, fmt.Errorf("got %d stages; want a multi-stage build", len(stages))
	}
	final = stages[len(stages)-1]
	i := slices.IndexFunc(stages, func(s stage) bool { return s.find("RUN", `\bgo build\b`) >= 0 })
	if i < 0 || i == len(stages)-1 {
		return stage{}, stage{}, fmt.Errorf("no stage before the runtime stage runs go build")
	}
	return stages[i], final, nil
}

func TestDockerfile(t *testing.T) {
	stages, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	build, final, err := buildAndFinal(stages)
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
				if u := podRunAsUser(d); u == nil || *u != uid {
					t.Errorf("%s: Deployment/%s runAsUser %s; the image runs as %d",
						filepath.Base(overlay), d.Name, ptrString(u), uid)
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
	cases := map[string]struct {
		old, new   string
		rule, want string // rule empty: buildAndFinal fails
	}{
		"single stage": {
			old: "\nFROM gcr.io/distroless/static:nonroot@", new: "\nCOPY x y\n#",
			want: "want a multi-stage build",
		},
		"sources before modules": {
			old: "COPY go.mod go.sum ./", new: "COPY . .\nCOPY go.mod go.sum ./",
			rule: "modules before sources", want: "want them in that order",
		},
		"cgo on": {
			old: "CGO_ENABLED=0 ", new: "",
			rule: "static build", want: "without CGO_ENABLED=0",
		},
		"no trimpath": {
			old: "-trimpath ", new: "",
			rule: "static build", want: `lacks "-trimpath"`,
		},
		"runs as root": {
			old: "USER 65532:65532", new: "USER 0",
			rule: "runtime image", want: "runs as uid 0",
		},
		"user by name": {
			old: "USER 65532:65532", new: "USER nonroot",
			rule: "runtime image", want: "runs as uid -1",
		},
		"root runtime image": {
			old: "\nFROM gcr.io/distroless/static:nonroot@", new: "\nFROM gcr.io/distroless/static@",
			rule: "runtime image", want: "", // USER 65532 still applies: no problem
		},
		"floating base image": {
			old: "golang:1.26@sha256:", new: "golang:1.26 #",
			rule: "pinned base images", want: "FROM golang:1.26 is not pinned",
		},
		"shell-form entrypoint": {
			old: `ENTRYPOINT ["/gateway"]`, new: "ENTRYPOINT /gateway",
			rule: "exec-form entrypoint", want: "is not exec form",
		},
		"built under emulation": {
			old: "FROM --platform=$BUILDPLATFORM golang", new: "FROM golang",
			rule: "cross-compiled with caches", want: "want $BUILDPLATFORM",
		},
		"no build cache": {
			old: "--mount=type=cache,target=/root/.cache/go-build", new: "",
			rule: "cross-compiled with caches", want: `lacks "--mount=type=cache,target=/root/.cache/go-build"`,
		},
		"no revision label": {
			old: `org.opencontainers.image.revision="${REVISION}"`, new: `org.opencontainers.image.vendor="bluetape"`,
			rule: "oci labels", want: "no org.opencontainers.image.revision label",
		},
		"admin port not exposed": {
			old: "EXPOSE 8080 9090", new: "EXPOSE 8080",
			rule: "exposed ports", want: "want 9090",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(string(orig), tc.old) {
				t.Fatalf("the Dockerfile no longer contains %q; update this case", tc.old)
			}
			file := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(file, []byte(strings.Replace(string(orig), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			stages, err := parseDockerfile(file)
			if err != nil {
				t.Fatal(err)
			}
			build, final, err := buildAndFinal(stages)
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
			if tc.want == "" {
				if len(got) > 0 {
					t.Errorf("got %q; want no problem", got)
				}
				return
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("got %q; want a problem containing %q", got, tc.want)
			}
		})
	}
}

func podRunAsUser(d *appsv1.Deployment) *int64 {
	if sc := d.Spec.Template.Spec.SecurityContext; sc != nil {
		return sc.RunAsUser
	}
	return nil
}

// dockerignored reports whether the .dockerignore patterns exclude name, a
// slash-separated path relative to the build context. Later patterns win;
// "!" re-includes; a pattern excluding a directory excludes what is in it.
func dockerignored(patterns []string, name string) bool {
	ignored := false
	for _, p := range patterns {
		negate := strings.HasPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		for dir := name; dir != "." && dir != "/"; dir = path.Dir(dir) {
			if ok, _ := path.Match(p, dir); ok {
				ignored = !negate
				break
			}
		}
	}
	return ignored
}

func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, name := range []string{"go.mod", "go.sum", "main.go", "config/config.go", "proxy/x.go", "metrics/x.go"} {
		if dockerignored(patterns, name) {
			t.Errorf("%s is excluded from the build context; the build needs it", name)
		}
	}
	for _, name := range []string{".git/config", "bin/gateway", ".env", "deploy/check/go.mod"} {
		if !dockerignored(patterns, name) {
			t.Errorf("%s is sent to the build context; exclude it", name)
		}
	}
}
