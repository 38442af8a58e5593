package check

import (
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// copyDeployTree copies deploy/ without the checks into a temporary directory
// and returns the copy's deploy/ path.
func copyDeployTree(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "deploy")
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(deployDir, p)
		switch {
		case err != nil:
			return err
		case d.IsDir() && rel == "check":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// gw is the JSON pointer to the gateway container in its Deployment.
const gw = "/spec/template/spec/containers/0"

// patch returns a kustomization patches entry applying one JSON patch
// operation to the objects of kind; value is JSON, empty for remove.
func patch(kind, op, path, value string) string {
	v := ""
	if value != "" {
		v = `,"value":` + value
	}
	return fmt.Sprintf("patches:\n  - target: {kind: %s}\n    patch: '[{\"op\":%q,\"path\":%q%s}]'\n", kind, op, path, v)
}

// env returns a patches entry setting one variable of the gateway container;
// envVar is the variable as JSON.
func env(envVar string) string {
	return `patches:
  - patch: '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"bluetape-gateway"},` +
		`"spec":{"template":{"spec":{"containers":[{"name":"gateway","env":[` + envVar + `]}]}}}}'` + "\n"
}

// kubeScore prefixes the id of a kube-score check in a case's rule.
const kubeScore = "kube-score/"

// TestChecksCatchBrokenManifests proves that the checks fail: each case
// breaks a copy of an overlay (production unless it names another) in one
// way, and the named rule, or kube-score's check, must report it; a case
// without a rule must fail strict decoding.
func TestChecksCatchBrokenManifests(t *testing.T) {
	dir := copyDeployTree(t)
	examples := exampleSecrets(t, dir)

	t.Run("unbroken copy passes", func(t *testing.T) {
		r := renderForChecks(t, dir, filepath.Join(dir, "overlays", "production"), examples)
		for _, rule := range deployRules {
			for _, p := range rule.check(r) {
				t.Errorf("%s: %s", rule.name, p)
			}
		}
	})

	big := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  big.json: " + strings.Repeat("x", maxAppliedSize) + "\n"
	cases := []struct {
		name, overlay, kustomization string
		files                        map[string]string
		rule, want                   string // rule empty: rendering must fail
	}{
		{name: "liveness probe path", kustomization: patch("Deployment", "replace", gw+"/livenessProbe/httpGet/path", `"/health"`), rule: "probes", want: `liveness probe path "/health"`},
		{name: "readiness probe on the API port", kustomization: patch("Deployment", "replace", gw+"/readinessProbe/httpGet/port", `"http"`), rule: "probes", want: "readiness probe port http is 8080"},
		{name: "admin address moved without the ports", kustomization: env(`{"name":"GATEWAY_ADMIN_ADDR","value":":9091"}`), rule: "probes", want: "GATEWAY_ADMIN_ADDR resolves to 9091"},
		{name: "capability added", kustomization: patch("Deployment", "add", gw+"/securityContext/capabilities/add", `["NET_ADMIN"]`), rule: "security-context", want: `must not include "NET_ADMIN"`},
		{name: "privilege escalation allowed", kustomization: patch("Deployment", "replace", gw+"/securityContext/allowPrivilegeEscalation", "true"), rule: "security-context", want: "allowPrivilegeEscalation != false"},
		{name: "host network", kustomization: patch("Deployment", "add", "/spec/template/spec/hostNetwork", "true"), rule: "security-context", want: "hostNetwork=true"},
		{name: "issuer discovery bound to another role", kustomization: patch("ClusterRoleBinding", "replace", "/roleRef/name", `"cluster-admin"`), rule: "issuer-discovery", want: `binds ClusterRole "cluster-admin"`},
		{name: "own token for another audience", kustomization: patch("Deployment", "add", "/spec/template/spec/volumes/1/projected/sources/0/serviceAccountToken/audience", `"bluetape-gateway"`), rule: "secret-files", want: "the API server takes its default audience only"},
		{name: "no egress to the API server", kustomization: patch("NetworkPolicy", "remove", "/spec/egress/2", ""), rule: "network-policy", want: "no egress to 6443/TCP"},
		{name: "misspelt variable", kustomization: env(`{"name":"GATEWAY_DRAIN_DELAYS","value":"10s"}`), rule: "env-names", want: "GATEWAY_DRAIN_DELAYS is not a variable the gateway reads"},
		{name: "key as plain env", kustomization: env(`{"name":"BLUETAPE_API_KEY","value":"not-a-real-key"}`), rule: "secret-env", want: "BLUETAPE_API_KEY is set"},
		{name: "secret as env from secretKeyRef", kustomization: env(`{"name":"GATEWAY_TRUSTED_PROXIES","valueFrom":{"secretKeyRef":{"name":"bluetape-gateway","key":"api-key"}}}`), rule: "secret-env", want: "comes from a Secret as plain environment"},
		{name: "redis url as environment", kustomization: env(`{"name":"GATEWAY_REDIS_URL","valueFrom":{"secretKeyRef":{"name":"bluetape-gateway-redis","key":"url"}}}`), rule: "secret-env", want: "GATEWAY_REDIS_URL is set; the Redis URL comes from a mounted Secret file"},
		{name: "secret file outside the mount", kustomization: env(`{"name":"BLUETAPE_API_KEY_FILE","value":"/etc/bluetape/api-key"}`), rule: "secret-files", want: "lies inside no volume mount"},
		{name: "secret file not a key of the Secret", kustomization: env(`{"name":"GATEWAY_CALLERS_FILE","value":"/var/run/secrets/bluetape/callers.yml"}`), rule: "secret-files", want: `key "callers.yml" is not documented`},
		{name: "secret mounted with subPath", kustomization: patch("Deployment", "add", gw+"/volumeMounts/0/subPath", `"api-key"`), rule: "secret-files", want: "uses subPath"},
		{name: "secret volume replaced by emptyDir", kustomization: patch("Deployment", "replace", "/spec/template/spec/volumes/0", `{"name":"bluetape-secrets","emptyDir":{}}`), rule: "secret-files", want: "is not a Secret"},
		{name: "grace period too short", kustomization: patch("Deployment", "replace", "/spec/template/spec/terminationGracePeriodSeconds", "30"), rule: "shutdown", want: "terminationGracePeriodSeconds 30s does not exceed"},
		{name: "unparsable drain delay", kustomization: env(`{"name":"GATEWAY_DRAIN_DELAY","value":"10"}`), rule: "shutdown", want: "GATEWAY_DRAIN_DELAY: time: missing unit"},
		{name: "preStop needs a shell", kustomization: patch("Deployment", "add", gw+"/lifecycle", `{"preStop":{"exec":{"command":["sleep","10"]}}}`), rule: "shutdown", want: "preStop runs a command"},
		{name: "ingress publishes the admin port", kustomization: patch("Ingress", "replace", "/spec/rules/0/http/paths/0/backend/service/port", `{"name":"admin"}`), rule: "ingress", want: "does not reach the API port 8080"},
		{name: "egress open to every port", kustomization: patch("NetworkPolicy", "add", "/spec/egress/-", "{}"), rule: "network-policy", want: "no ports: allows every port"},
		{name: "admin port open to another namespace", kustomization: patch("NetworkPolicy", "replace", "/spec/ingress/1/from/0/namespaceSelector/matchLabels", `{"kubernetes.io/metadata.name":"default"}`), rule: "network-policy", want: "admin port open to kubernetes.io/metadata.name=default"},
		{name: "redis without egress", kustomization: env(`{"name":"GATEWAY_REDIS_URL_FILE","value":"/var/run/secrets/bluetape/url"}`), rule: "network-policy", want: "no egress to 6379/TCP"},
		{name: "redis egress without TLS and Sentinel", overlay: "redis", kustomization: patch("NetworkPolicy", "replace", "/spec/egress/3/ports", `[{"port":6379,"protocol":"TCP"}]`), rule: "network-policy", want: "no egress to 6380/TCP"},
		{name: "redis egress without Sentinel", overlay: "redis", kustomization: patch("NetworkPolicy", "remove", "/spec/egress/3/ports/2", ""), rule: "network-policy", want: "no egress to 26379/TCP"},
		{name: "dns open to every address", kustomization: patch("NetworkPolicy", "remove", "/spec/egress/0/to", ""), rule: "network-policy", want: "DNS (53/UDP) open beyond the cluster DNS"},
		{name: "https open to the cluster", kustomization: patch("NetworkPolicy", "remove", "/spec/egress/1/to", ""), rule: "network-policy", want: "HTTPS open to every address, the Kubernetes API server included"},
		{name: "https open to a private range", kustomization: patch("NetworkPolicy", "remove", "/spec/egress/1/to/0/ipBlock/except/0", ""), rule: "network-policy", want: "reaches the private range 10.0.0.0/8 on 443"},
		{name: "ingress class changed without its controller", kustomization: patch("NetworkPolicy", "replace", "/spec/ingress/0/from/1/namespaceSelector/matchLabels", `{"kubernetes.io/metadata.name":"ingress-nginx"}`), rule: "network-policy", want: "API port not open to the namespace labelled bluetape-gateway/ingress-class=nginx-internal"},
		{name: "pdb blocks every eviction", kustomization: patch("PodDisruptionBudget", "replace", "/spec/maxUnavailable", "0"), rule: "pod-disruption-budget", want: "allows no eviction"},
		{name: "GOMEMLIMIT at the container limit", kustomization: env(`{"name":"GOMEMLIMIT","value":"256MiB"}`), rule: "resources", want: "GOMEMLIMIT=256MiB is above 95% of the memory limit 256Mi"},
		{name: "oversized dashboard", kustomization: "resources:\n  - big.yaml\n", files: map[string]string{"big.yaml": big}, rule: "object-size", want: "ConfigMap/big:"},
		{name: "token mounted", kustomization: patch("Deployment", "replace", "/spec/template/spec/automountServiceAccountToken", "true"), rule: "service-account", want: "automountServiceAccountToken is not false"},
		{name: "no spread across nodes", kustomization: patch("Deployment", "remove", "/spec/template/spec/topologySpreadConstraints/0", ""), rule: "topology-spread", want: "no topology spread across nodes"},
		{name: "service monitor scrapes the API port", kustomization: patch("ServiceMonitor", "replace", "/spec/endpoints/0/port", `"http"`), rule: "service-monitor", want: `port "http"; want the Service port "admin"`},
		{name: "overlay ships a Secret", kustomization: "resources:\n  - ../../examples\n", rule: "kinds", want: "overlays must not contain Secrets"},
		{name: "unknown field", kustomization: patch("Deployment", "add", gw+"/livenessProbe/httpGet/paht", `"/healthz"`), want: `unknown field "paht"`},
		{name: "unknown kind", kustomization: "resources:\n  - job.yaml\n", files: map[string]string{"job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n"}, want: "unknown kind batch/v1 Job"},

		// What kube-score checks (.ci/test runs it on every overlay): these
		// cases prove that no kube-score/ignore annotation hides it.
		{name: "readOnlyRootFilesystem removed", kustomization: patch("Deployment", "remove", gw+"/securityContext/readOnlyRootFilesystem", ""), rule: kubeScore + "container-security-context-readonlyrootfilesystem"},
		{name: "runs as root", kustomization: patch("Deployment", "replace", "/spec/template/spec/securityContext/runAsUser", "0"), rule: kubeScore + "container-security-context-user-group-id"},
		{name: "replicas beside the autoscaler", kustomization: patch("Deployment", "add", "/spec/replicas", "3"), rule: kubeScore + "deployment-targeted-by-hpa-does-not-have-replicas-configured"},
		{name: "service selects other pods", kustomization: patch("Service", "replace", "/spec/selector", `{"app.kubernetes.io/name":"bluetape-gatway"}`), rule: kubeScore + "service-targets-pod"},
		{name: "autoscaler targets another deployment", kustomization: patch("HorizontalPodAutoscaler", "replace", "/spec/scaleTargetRef/name", `"gateway"`), rule: kubeScore + "horizontalpodautoscaler-has-target"},
		{name: "no cpu request", kustomization: patch("Deployment", "remove", gw+"/resources/requests/cpu", ""), rule: kubeScore + "container-resources"},
		{name: "no ephemeral-storage limit", kustomization: patch("Deployment", "remove", gw+"/resources/limits/ephemeral-storage", ""), rule: kubeScore + "container-ephemeral-storage-request-and-limit"},
		{name: "latest image", kustomization: "images:\n  - name: registry.example.com/bluetape/bluetape-gateway\n    newTag: latest\n", rule: kubeScore + "container-image-tag"},
		{name: "ingress backend is another Service", kustomization: patch("Ingress", "replace", "/spec/rules/0/http/paths/0/backend/service/name", `"gateway"`), rule: kubeScore + "ingress-targets-service"},
		{name: "ingress backend port the Service lacks", kustomization: patch("Ingress", "replace", "/spec/rules/0/http/paths/0/backend/service/port", `{"name":"https"}`), rule: kubeScore + "ingress-targets-service"},
		{name: "pdb without a policy", kustomization: patch("PodDisruptionBudget", "remove", "/spec/maxUnavailable", ""), rule: kubeScore + "poddisruptionbudget-has-policy"},
		{name: "no egress policy", kustomization: patch("NetworkPolicy", "replace", "/spec/policyTypes", `["Ingress"]`), rule: kubeScore + "pod-networkpolicy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			overlay := filepath.Join(dir, "overlays", "broken-"+strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.MkdirAll(overlay, 0o755); err != nil {
				t.Fatal(err)
			}
			from := cmp.Or(tc.overlay, "production")
			files := map[string]string{"kustomization.yaml": "resources:\n  - ../" + from + "\n" + tc.kustomization}
			for f, body := range tc.files {
				files[f] = body
			}
			for f, body := range files {
				if err := os.WriteFile(filepath.Join(overlay, f), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.rule == "" {
				if _, err := manifest.Render(overlay); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got render error %v; want one containing %q", err, tc.want)
				}
				return
			}
			if id, ok := strings.CutPrefix(tc.rule, kubeScore); ok {
				failures := kubeScoreFailures(t, overlay)
				for _, ids := range failures {
					if slices.Contains(ids, id) {
						return
					}
				}
				t.Errorf("kube-score reported %q; want a failure of %s", failures, id)
				return
			}
			r := renderForChecks(t, dir, overlay, examples)
			i := slices.IndexFunc(deployRules, func(d deployRule) bool { return d.name == tc.rule })
			got := deployRules[i].check(r)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("rule %q reported %q; want a problem containing %q", tc.rule, got, tc.want)
			}
		})
	}
}
