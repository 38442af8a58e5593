package check

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
	"github.com/bluetape/bluetape-gateway/metrics"
)

var updatePrometheusRule = flag.Bool("update-prometheusrule", false,
	"rewrite deploy/monitoring/prometheusrule.yaml from deploy/monitoring/rules.yml")

// Files of deploy/monitoring, the runbooks its alerts link to and the
// README its dashboard links to, relative to this package's directory.
// "promtool check rules" and "promtool test rules" (.ci/test) validate
// rules.yml and run the alerts' unit tests in rules_test.yml; the tests here
// check what promtool cannot see.
var (
	monitoringDir      = filepath.Join(deployDir, "monitoring")
	rulesFile          = filepath.Join(monitoringDir, "rules.yml")
	ruleTestsFile      = filepath.Join(monitoringDir, "rules_test.yml")
	prometheusRuleFile = filepath.Join(monitoringDir, "prometheusrule.yaml")
	dashboardFile      = filepath.Join(monitoringDir, "dashboard.json")
	kustomizationFile  = filepath.Join(monitoringDir, "kustomization.yaml")
	readmeFile         = filepath.Join(deployDir, "..", "README.md")
	runbooksFile       = filepath.Join(deployDir, "..", "docs", "runbooks.md")
)

// Monitoring conventions.
const (
	prometheusRuleName = "bluetape-gateway"
	dashboardConfigMap = "bluetape-gateway-dashboard"
	dashboardLabel     = "grafana_dashboard"
	// readmeURL is where the README lives once the repository is published;
	// the dashboard links into it.
	readmeURL = "https://github.com/bluetape/bluetape-gateway/blob/main/README.md"
	// runbooksConfigMap is the kustomize-local ConfigMap whose "base" is
	// the runbooks' address: the one place an operator changes it.
	runbooksConfigMap = "bluetape-gateway-runbooks"
)

// severities are the values an alert's severity label may take: critical
// pages someone, warning goes to the team's channel.
var severities = []string{"critical", "warning"}

// histogramNames are the contract's histograms. Prometheus exposes each as
// _bucket, _sum and _count series; the bare family name selects nothing.
var histogramNames = []string{metrics.RequestDuration, metrics.UpstreamRequestDuration}

// standardMetrics are the series that queries may use besides the gateway's
// own: Prometheus's per-target up, and the Go runtime and process
// collectors' metrics that the gateway registers on its registry.
var standardMetrics = []string{
	"up",
	"go_goroutines", "go_threads", "go_info",
	"go_gc_duration_seconds", "go_gc_duration_seconds_sum", "go_gc_duration_seconds_count",
	"go_memstats_alloc_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes",
	"go_memstats_sys_bytes", "go_memstats_alloc_bytes_total",
	"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
	"process_open_fds", "process_max_fds", "process_start_time_seconds",
}

// hitRatioResults are the cache results that count as hits in the hit
// ratio, wherever it is computed (alerts, dashboard, documentation): every
// lookup answered from the cache, fresh, stale or a remembered 404.
const hitRatioResults = "hit|stale|negative_hit"

// exportedMetrics returns every series name a query about the gateway may
// select: metrics.Names() (histograms through their _bucket, _sum and _count
// series), the shared mode's metrics.SharedNames() and standardMetrics.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := make(map[string]bool)
	for _, n := range metrics.Names() {
		known[n] = true
	}
	for _, h := range histogramNames {
		if !known[h] {
			t.Fatalf("histogram %s is missing from metrics.Names()", h)
		}
		delete(known, h)
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[h+suffix] = true
		}
	}
	for _, n := range append(standardMetrics, metrics.SharedNames()...) {
		known[n] = true
	}
	return known
}

// readYAML decodes a YAML or JSON file into v.
func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
}

// alertRule is one rule of rules.yml.
type alertRule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	Annotations map[string]string `json:"annotations"`
}

// readAlertRules returns the rules of rules.yml, which "promtool check
// rules" validates.
func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, rulesFile, &f)
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// TestAlertRulesAreUnitTested checks that every rule is an alert, defined
// once, whose description shows a value from the alert, and that
// rules_test.yml has a case where it stays silent and one where it fires
// with a known severity and its summary, description and runbook_url.
// promtool compares an alert's labels and annotations whole, so the firing
// case pins all of them.
func TestAlertRulesAreUnitTested(t *testing.T) {
	var f struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []struct {
					ExpLabels      map[string]string `json:"exp_labels"`
					ExpAnnotations map[string]string `json:"exp_annotations"`
				} `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, ruleTestsFile, &f)
	if !slices.Contains(f.RuleFiles, filepath.Base(rulesFile)) {
		t.Errorf("%s: rule_files %q does not include %s", ruleTestsFile, f.RuleFiles, filepath.Base(rulesFile))
	}
	fires, silent := make(map[string]bool), make(map[string]bool)
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			silent[a.Alertname] = silent[a.Alertname] || len(a.ExpAlerts) == 0
			for _, e := range a.ExpAlerts {
				pinned := slices.Contains(severities, e.ExpLabels["severity"])
				for _, k := range []string{"summary", "description", "runbook_url"} {
					pinned = pinned && strings.TrimSpace(e.ExpAnnotations[k]) != ""
				}
				fires[a.Alertname] = fires[a.Alertname] || pinned
			}
		}
	}
	seen := make(map[string]bool)
	for _, r := range readAlertRules(t) {
		switch {
		case r.Alert == "":
			t.Errorf("rule %q is not an alert", r.Record)
		case seen[r.Alert]:
			t.Errorf("alert %s is defined twice", r.Alert)
		case !strings.Contains(r.Annotations["description"], "{{"):
			t.Errorf("%s: description shows no value from the alert ({{ $value }}, {{ $labels.job }}, ...)", r.Alert)
		}
		seen[r.Alert] = true
		if !fires[r.Alert] {
			t.Errorf("%s: no case in %s where it fires with severity one of %q, summary, description and runbook_url", r.Alert, ruleTestsFile, severities)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no case in %s where it stays silent", r.Alert, ruleTestsFile)
		}
	}
}

// runbookBase returns the runbooks' address that deploy/monitoring's
// kustomization sets: the literal "base" of its runbooks ConfigMap.
func runbookBase(t *testing.T) string {
	t.Helper()
	var k struct {
		ConfigMapGenerator []struct {
			Name     string   `json:"name"`
			Literals []string `json:"literals"`
		} `json:"configMapGenerator"`
	}
	readYAML(t, kustomizationFile, &k)
	for _, g := range k.ConfigMapGenerator {
		for _, l := range g.Literals {
			if v, ok := strings.CutPrefix(l, "base="); ok && g.Name == runbooksConfigMap {
				return v
			}
		}
	}
	t.Fatalf("%s: no configMapGenerator %s with a literal base=<runbooks address>", kustomizationFile, runbooksConfigMap)
	return ""
}

// checkRenderedRunbookURLs renders the monitoring kustomization in dir and
// checks that every rule of the PrometheusRule links to base#<its anchor>,
// and that the runbooks ConfigMap stays local to kustomize.
func checkRenderedRunbookURLs(t *testing.T, dir, base string, alerts int) {
	t.Helper()
	objs, err := manifest.Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if o.Kind == "ConfigMap" && o.Name == runbooksConfigMap {
			t.Errorf("%s is rendered; it must stay local to kustomize", o)
		}
		pr, ok := o.Value.(*monitoringv1.PrometheusRule)
		if !ok {
			continue
		}
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				n++
				if want := base + "#" + githubAnchor("Alert: "+r.Alert); r.Annotations["runbook_url"] != want {
					t.Errorf("rendered %s: %s: runbook_url %q; want %q", o, r.Alert, r.Annotations["runbook_url"], want)
				}
			}
		}
	}
	if n != alerts {
		t.Errorf("the rendered PrometheusRule holds %d rules; want %d", n, alerts)
	}
}

// TestRunbookURLs checks that every alert links to its own section of
// docs/runbooks.md ("## Alert: <name>"), under the one base address the
// monitoring kustomization sets: in rules.yml as written, and in the
// PrometheusRule as kustomize renders it, also after the base is changed.
func TestRunbookURLs(t *testing.T) {
	doc, err := os.ReadFile(runbooksFile)
	if err != nil {
		t.Fatalf("the runbooks live in docs/runbooks.md: %v", err)
	}
	anchors := markdownAnchors(string(doc))
	base := runbookBase(t)
	rules := readAlertRules(t)
	for _, r := range rules {
		anchor := githubAnchor("Alert: " + r.Alert)
		if !anchors[anchor] {
			t.Errorf("%s: docs/runbooks.md has no section \"## Alert: %s\" (anchor %q)", r.Alert, r.Alert, anchor)
		}
		if got, want := r.Annotations["runbook_url"], base+"#"+anchor; got != want {
			t.Errorf("%s: rules.yml runbook_url %q; want %q", r.Alert, got, want)
		}
	}
	checkRenderedRunbookURLs(t, monitoringDir, base, len(rules))

	// The base is one setting: change it in a copy of deploy/monitoring.
	dir := t.TempDir()
	const other = "https://wiki.example.com/ops/bluetape-gateway"
	entries, err := os.ReadDir(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(monitoringDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.Replace(data, []byte("base="+base), []byte("base="+other), 1)
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkRenderedRunbookURLs(t, dir, other, len(rules))
}

// TestDashboardLinksIntoReadme checks that every link of the dashboard
// into the README names the anchor of one of its headings.
func TestDashboardLinksIntoReadme(t *testing.T) {
	readme, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(readme))
	var dash struct {
		Links []struct {
			URL string `json:"url"`
		} `json:"links"`
	}
	readYAML(t, dashboardFile, &dash)
	for _, l := range dash.Links {
		if anchor, ok := strings.CutPrefix(l.URL, readmeURL+"#"); ok && !anchors[anchor] {
			t.Errorf("%s: link %s: README.md has no heading with anchor %q", dashboardFile, l.URL, anchor)
		}
	}
}

var (
	atxHeading = regexp.MustCompile(`^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	codeFence  = regexp.MustCompile("^ {0,3}(```|~~~)")
)

// markdownAnchors returns the anchors GitHub gives the headings of a
// markdown document, plus explicit <a id="..."> anchors.
func markdownAnchors(doc string) map[string]bool {
	anchors := make(map[string]bool)
	counts := make(map[string]int)
	inFence := false
	for line := range strings.SplitSeq(doc, "\n") {
		if codeFence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			anchors[m[1]] = true
		}
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		a := githubAnchor(m[1])
		if n := counts[a]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			anchors[a] = true
		}
		counts[a]++
	}
	return anchors
}

// githubAnchor returns the anchor GitHub derives from a heading's text:
// lower case, spaces become hyphens, punctuation other than - and _ goes.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestGithubAnchor(t *testing.T) {
	cases := map[string]string{
		"Alert: BlueTapeGatewayHigh5xxRatio":  "alert-bluetapegatewayhigh5xxratio",
		"Monitoring":                          "monitoring",
		"Running the rule tests (`promtool`)": "running-the-rule-tests-promtool",
		"Metrics & labels":                    "metrics--labels",
	}
	for in, want := range cases {
		if got := githubAnchor(in); got != want {
			t.Errorf("githubAnchor(%q) = %q; want %q", in, got, want)
		}
	}
	doc := "# Title\n```\n## Not a heading\n```\n## Alert: X\n## Alert: X\n<a id=\"custom\"></a>\n"
	got := markdownAnchors(doc)
	for _, a := range []string{"title", "alert-x", "alert-x-1", "custom"} {
		if !got[a] {
			t.Errorf("anchor %q missing from %v", a, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a heading inside a code fence got an anchor")
	}
}

// prometheusRuleHeader precedes rules.yml's groups in prometheusrule.yaml.
const prometheusRuleHeader = `# Generated from rules.yml; edit that file, then in deploy/check run
#   go test -run TestPrometheusRuleMatchesRulesFile -update-prometheusrule
# The tests fail while the groups here differ from rules.yml's.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ` + prometheusRuleName + `
  labels:
    app.kubernetes.io/name: bluetape-gateway
spec:
`

// prometheusRuleFromRules returns rules.yml as a PrometheusRule: the header,
// then rules.yml from its groups key on, indented under spec. Comments ahead
// of the groups are about rules.yml and stay there.
func prometheusRuleFromRules(rules []byte) ([]byte, error) {
	start := 0
	if !bytes.HasPrefix(rules, []byte("groups:")) {
		i := bytes.Index(rules, []byte("\ngroups:"))
		if i < 0 {
			return nil, fmt.Errorf("%s: no top-level groups key", rulesFile)
		}
		start = i + 1
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for line := range strings.SplitAfterSeq(string(rules[start:]), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes(), nil
}

// TestPrometheusRuleMatchesRulesFile keeps prometheusrule.yaml what the
// generator makes of rules.yml, which promtool checks and unit-tests.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := prometheusRuleFromRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	if *updatePrometheusRule {
		if err := os.WriteFile(prometheusRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		g, w := "", ""
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s:%d differs from what %s generates: got %q; want %q (rerun with -update-prometheusrule)",
				prometheusRuleFile, i+1, rulesFile, g, w)
		}
	}
}

// TestMonitoringKustomization renders deploy/monitoring as the base
// includes it: one PrometheusRule and the dashboard ConfigMap, with a fixed
// name and the label the Grafana sidecar looks for.
func TestMonitoringKustomization(t *testing.T) {
	dashboard, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Render(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	var rules, configMaps int
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			configMaps++
			if v.Name != dashboardConfigMap {
				t.Errorf("%s: want the name %s (no hash suffix: Grafana keys dashboards by uid, and overlays refer to it by name)", o, dashboardConfigMap)
			}
			if v.Labels[dashboardLabel] != "1" {
				t.Errorf("%s: label %s=%q; want \"1\" for the Grafana sidecar", o, dashboardLabel, v.Labels[dashboardLabel])
			}
			if v.Data["dashboard.json"] != string(dashboard) {
				t.Errorf("%s: dashboard.json differs from %s", o, dashboardFile)
			}
		default:
			if o.Kind != "PrometheusRule" {
				t.Errorf("%s: unexpected object", o)
				continue
			}
			rules++
			if o.Name != prometheusRuleName {
				t.Errorf("%s: want the name %s", o, prometheusRuleName)
			}
		}
	}
	if rules != 1 || configMaps != 1 {
		t.Errorf("rendered %d PrometheusRules and %d ConfigMaps; want one of each", rules, configMaps)
	}
}

// TestDashboard checks the dashboard's shape: every panel and query reads
// from the ${datasource} variable, the namespace, job and instance variables
// exist, and panel ids are unique.
func TestDashboard(t *testing.T) {
	dash := readDashboard(t)
	if uid, _ := dash["uid"].(string); uid == "" {
		t.Error("dashboard has no uid")
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v; want 36 or later (datasource references by uid)", v)
	}
	vars := make(map[string]map[string]any)
	templating, _ := dash["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		if m, ok := v.(map[string]any); ok {
			name, _ := m["name"].(string)
			vars[name] = m
		}
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("no datasource variable of type datasource for prometheus: %v", ds)
	}
	for _, name := range []string{"namespace", "job", "instance"} {
		if vars[name] == nil {
			t.Errorf("no %s variable", name)
		}
	}
	ids := make(map[float64]bool)
	walkDashboard(dash, func(where string, v map[string]any) {
		if ds, ok := v["datasource"].(map[string]any); ok && ds["type"] == "prometheus" && ds["uid"] != "${datasource}" {
			t.Errorf("%s: datasource uid %v; want ${datasource}", where, ds["uid"])
		}
		if _, isPanel := v["gridPos"]; isPanel {
			if _, ok := v["datasource"]; !ok && v["type"] != "row" {
				t.Errorf("%s: panel has no datasource", where)
			}
			id, _ := v["id"].(float64)
			if ids[id] {
				t.Errorf("%s: panel id %v is used twice", where, id)
			}
			ids[id] = true
		}
	})
}

// walkDashboard calls visit on every JSON object of a decoded dashboard
// outside its templating, with where naming it by the titles above it.
func walkDashboard(dash map[string]any, visit func(where string, obj map[string]any)) {
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where += "/" + title
			}
			visit(where, v)
			for k, c := range v {
				if k != "templating" {
					walk(where, c)
				}
			}
		case []any:
			for _, c := range v {
				walk(where, c)
			}
		}
	}
	walk("dashboard.json", dash)
}

func readDashboard(t *testing.T) map[string]any {
	t.Helper()
	var dash map[string]any
	readYAML(t, dashboardFile, &dash)
	return dash
}

// promQuery is one PromQL expression and where it was found.
type promQuery struct {
	where, expr string
}

// dashboardQueries returns the PromQL of every query in a decoded Grafana
// dashboard: each "expr", wherever it is (panels, panels inside rows,
// library panels), and the metric selector of each label_values or
// query_result variable query.
func dashboardQueries(dash map[string]any) []promQuery {
	var qs []promQuery
	walkDashboard(dash, func(where string, v map[string]any) {
		if expr, ok := v["expr"].(string); ok {
			ref, _ := v["refId"].(string)
			qs = append(qs, promQuery{where: where + "/" + ref, expr: expr})
		}
	})

	templating, _ := dash["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		m, _ := v.(map[string]any)
		if m == nil || m["type"] != "query" {
			continue
		}
		q, ok := m["query"].(string)
		if !ok {
			obj, _ := m["query"].(map[string]any)
			q, _ = obj["query"].(string)
		}
		if expr := variableQueryExpr(q); expr != "" {
			qs = append(qs, promQuery{where: fmt.Sprintf("dashboard.json/variable %v", m["name"]), expr: expr})
		}
	}
	return qs
}

var (
	labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)
	queryResultQuery = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
)

// variableQueryExpr returns the PromQL inside a Grafana variable query, or
// "" when it has none (label_values(label), label_names(), metrics(...)).
func variableQueryExpr(q string) string {
	if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if m := queryResultQuery.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	return ""
}

var (
	grafanaBuiltin  = regexp.MustCompile(`\$\{__([a-z_]+)(?::[^}]*)?\}|\$__([a-z_]+)`)
	grafanaVariable = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]`)
)

// grafanaBuiltins are the values Grafana's global variables take in
// expandGrafana: durations where PromQL wants a duration, seconds where it
// wants a number.
var grafanaBuiltins = map[string]string{
	"rate_interval": "5m",
	"interval":      "1m",
	"range":         "6h",
	"interval_ms":   "60000",
	"range_s":       "21600",
	"range_ms":      "21600000",
}

// expandGrafana replaces Grafana's variables in a query with values that
// keep it valid PromQL: built-in intervals with durations, dashboard
// variables (used inside label matchers) with a plain word.
func expandGrafana(expr string) (string, error) {
	var unknown []string
	expr = grafanaBuiltin.ReplaceAllStringFunc(expr, func(s string) string {
		m := grafanaBuiltin.FindStringSubmatch(s)
		name := m[1] + m[2]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		unknown = append(unknown, s)
		return s
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variables %q", unknown)
	}
	return grafanaVariable.ReplaceAllString(expr, "x"), nil
}

// selectors parses a query, Grafana variables expanded, and returns its
// vector selectors.
func selectors(p parser.Parser, expr string) ([]*parser.VectorSelector, error) {
	expr, err := expandGrafana(expr)
	if err != nil {
		return nil, err
	}
	ast, err := p.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, err)
	}
	var vss []*parser.VectorSelector
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			vss = append(vss, vs)
		}
		return nil
	})
	return vss, nil
}

// metricName returns the single metric a selector names, or "".
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// checkQuery parses a query and returns its problems: a parse error, a
// selector without a metric name, a metric the gateway does not export, or
// a hit ratio that counts other results than hitRatioResults.
func checkQuery(p parser.Parser, known map[string]bool, expr string) []string {
	vss, err := selectors(p, expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, vs := range vss {
		name := metricName(vs)
		switch {
		case name == "":
			problems = append(problems, fmt.Sprintf("selector %s names no single metric", vs))
		case !known[name]:
			problems = append(problems, fmt.Sprintf("metric %s is not exported by the gateway", name))
		case name == metrics.CacheLookupsTotal:
			for _, m := range vs.LabelMatchers {
				if m.Name == "result" && (m.Type != labels.MatchRegexp || m.Value != hitRatioResults) {
					problems = append(problems, fmt.Sprintf("selector %s: a hit ratio counts result=~%q", vs, hitRatioResults))
				}
			}
		}
	}
	return problems
}

// TestQueriesUseExportedMetrics parses every alert expression and dashboard
// query with Prometheus's parser and checks each metric it selects.
func TestQueriesUseExportedMetrics(t *testing.T) {
	known := exportedMetrics(t)
	var qs []promQuery
	for _, r := range readAlertRules(t) {
		qs = append(qs, promQuery{where: "rules.yml/" + r.Alert, expr: r.Expr})
	}
	dqs := dashboardQueries(readDashboard(t))
	if len(dqs) == 0 {
		t.Fatal("found no queries in dashboard.json")
	}
	qs = append(qs, dqs...)
	p := parser.NewParser(parser.Options{})
	for _, q := range qs {
		for _, problem := range checkQuery(p, known, q.expr) {
			t.Errorf("%s: %s", q.where, problem)
		}
	}
}

// TestQueryCheckReportsProblems proves that the query check can fail: a
// misspelt metric in a panel nested in a collapsed row, a bare histogram
// name, a histogram suffix on a counter, a selector by regex name and bad
// syntax are all reported.
func TestQueryCheckReportsProblems(t *testing.T) {
	const dash = `{
	  "panels": [
	    {"type": "row", "title": "Collapsed", "collapsed": true, "panels": [
	      {"title": "Nested", "targets": [
	        {"refId": "A", "expr": "sum by (code) (rate(bluetape_gateway_requets_total{job=\"$job\", instance=~\"${instance:regex}\"}[$__rate_interval]))"}
	      ]}
	    ]},
	    {"title": "Fine", "targets": [
	      {"refId": "A", "expr": "histogram_quantile(0.99, sum by (le) (rate(bluetape_gateway_request_duration_seconds_bucket{job=\"$job\"}[$__rate_interval])))"},
	      {"refId": "B", "expr": "rate(process_cpu_seconds_total{job=\"$job\"}[$__rate_interval]) and on() up{job=\"$job\"} == 1"}
	    ]}
	  ],
	  "templating": {"list": [
	    {"name": "job", "type": "query", "query": {"query": "label_values(bluetape_gateway_bild_info, job)"}}
	  ]}
	}`
	var d map[string]any
	if err := json.Unmarshal([]byte(dash), &d); err != nil {
		t.Fatal(err)
	}
	known := exportedMetrics(t)
	p := parser.NewParser(parser.Options{})
	got := make(map[string][]string)
	for _, q := range dashboardQueries(d) {
		got[q.where] = checkQuery(p, known, q.expr)
	}
	want := map[string][]string{
		"dashboard.json/Collapsed/Nested/A": {"metric bluetape_gateway_requets_total is not exported by the gateway"},
		"dashboard.json/Fine/A":             nil,
		"dashboard.json/Fine/B":             nil,
		"dashboard.json/variable job":       {"metric bluetape_gateway_bild_info is not exported by the gateway"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}

	cases := map[string]string{
		"bare histogram":               `rate(bluetape_gateway_request_duration_seconds[5m])`,
		"suffix on a counter":          `rate(bluetape_gateway_requests_total_bucket[5m])`,
		"regex metric name":            `{__name__=~"bluetape_gateway_.+"}`,
		"syntax":                       `sum(rate(bluetape_gateway_requests_total[5m])`,
		"unknown Grafana macro":        `rate(bluetape_gateway_requests_total[$__rate_intervall])`,
		"hit ratio of fresh hits only": `sum(rate(bluetape_gateway_cache_lookups_total{result="hit"}[5m])) / sum(rate(bluetape_gateway_cache_lookups_total[5m]))`,
	}
	for name, expr := range cases {
		t.Run(name, func(t *testing.T) {
			if problems := checkQuery(p, known, expr); len(problems) == 0 {
				t.Errorf("checkQuery(%q) reported nothing", expr)
			}
		})
	}
}

// TestPrometheusRuleFromRules pins the generator's shape: the header, the
// groups indented under spec, comments ahead of the groups dropped.
func TestPrometheusRuleFromRules(t *testing.T) {
	in := "# about rules.yml\ngroups:\n  - name: g\n    rules:\n\n      - alert: A\n"
	got, err := prometheusRuleFromRules([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := prometheusRuleHeader + "  groups:\n    - name: g\n      rules:\n\n        - alert: A\n"
	if string(got) != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if _, err := prometheusRuleFromRules([]byte("rules: []\n")); err == nil {
		t.Error("a file without groups gave no error")
	}
}

// dashboardScopeProblems returns what makes a dashboard mix environments or
// hide exemplars: a query selector without the namespace and job matchers,
// and a latency (histogram_quantile) target of a time series panel without
// exemplars.
func dashboardScopeProblems(p parser.Parser, dash map[string]any) []string {
	var problems []string
	for _, q := range dashboardQueries(dash) {
		scope := []string{"namespace", "job"}
		switch q.where {
		case "dashboard.json/variable namespace":
			continue
		case "dashboard.json/variable job":
			scope = scope[:1]
		}
		vss, err := selectors(p, q.expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", q.where, err))
			continue
		}
		for _, vs := range vss {
			for _, l := range scope {
				if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return m.Name == l }) {
					problems = append(problems, fmt.Sprintf("%s: selector %s has no %s matcher; the dashboard would sum environments", q.where, vs, l))
				}
			}
		}
	}
	walkDashboard(dash, func(where string, v map[string]any) {
		targets, _ := v["targets"].([]any)
		for _, t := range targets {
			t, _ := t.(map[string]any)
			expr, _ := t["expr"].(string)
			if v["type"] == "timeseries" && strings.Contains(expr, "histogram_quantile") && t["exemplar"] != true {
				problems = append(problems, fmt.Sprintf("%s/%v: latency query without exemplars", where, t["refId"]))
			}
		}
	})
	return problems
}

// TestDashboardScope checks that every query is scoped to the chosen
// namespace and job, and that latency panels show exemplars.
func TestDashboardScope(t *testing.T) {
	for _, problem := range dashboardScopeProblems(parser.NewParser(parser.Options{}), readDashboard(t)) {
		t.Error(problem)
	}
}

// TestDashboardScopeReportsProblems proves that the scope check fails: a
// query without the namespace matcher and a latency panel without
// exemplars are reported, a scoped query with exemplars is not.
func TestDashboardScopeReportsProblems(t *testing.T) {
	const dash = `{
	  "panels": [
	    {"type": "timeseries", "title": "Latency", "targets": [
	      {"refId": "A", "expr": "histogram_quantile(0.99, sum by (le) (rate(bluetape_gateway_request_duration_seconds_bucket{job=\"$job\"}[$__rate_interval])))"},
	      {"refId": "B", "exemplar": true, "expr": "histogram_quantile(0.5, sum by (le) (rate(bluetape_gateway_request_duration_seconds_bucket{namespace=\"$namespace\", job=\"$job\"}[$__rate_interval])))"}
	    ]}
	  ]
	}`
	var d map[string]any
	if err := json.Unmarshal([]byte(dash), &d); err != nil {
		t.Fatal(err)
	}
	got := dashboardScopeProblems(parser.NewParser(parser.Options{}), d)
	want := []string{
		`dashboard.json/Latency/A: selector bluetape_gateway_request_duration_seconds_bucket{job="x"} has no namespace matcher; the dashboard would sum environments`,
		"dashboard.json/Latency/A: latency query without exemplars",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
}
