package check

import (
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
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == "check" {
				return filepath.SkipDir
			}
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

// deploymentPatch wraps a JSON patch for the gateway's Deployment.
func deploymentPatch(ops string) string {
	return jsonPatch("Deployment", ops)
}

func jsonPatch(kind, ops string) string {
	var b strings.Builder
	b.WriteString("resources:\n  - ../production\npatches:\n  - target:\n      kind: " + kind + "\n    patch: |-\n")
	for line := range strings.Lines(strings.TrimSpace(ops)) {
		b.WriteString("      " + line)
	}
	b.WriteString("\n")
	return b.String()
}

// envPatch sets one environment variable of the gateway container.
func envPatch(env string) string {
	return "resources:\n  - ../production\npatches:\n  - patch: |-\n" +
		"      apiVersion: apps/v1\n      kind: Deployment\n      metadata:\n        name: bluetape-gateway\n" +
		"      spec:\n        template:\n          spec:\n            containers:\n              - name: gateway\n" +
		"                env:\n" + indent(env, 18)
}

func indent(s string, n int) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimSpace(s)) {
		b.WriteString(strings.Repeat(" ", n) + line)
	}
	return b.String() + "\n"
}

// kubeScore prefixes the id of a kube-score check in a case's rule.
const kubeScore = "kube-score/"

// TestChecksCatchBrokenManifests proves that the checks fail: each case
// breaks a copy of the production overlay in one way, and the named rule
// must report it.
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

	cases := map[string]struct {
		kustomization string
		overlay       string // the overlay broken; production when empty
		files         map[string]string
		// rule is the rule that must fail: a deploy rule, or kubeScore and a
		// kube-score check id; empty when rendering must fail.
		rule string
		want string // a fragment of the problem or error
	}{
		"liveness probe path": {
			kustomization: deploymentPatch(`
- op: replace
  path: /spec/template/spec/containers/0/livenessProbe/httpGet/path
  value: /health`),
			rule: "probes", want: `liveness probe path "/health"`,
		},
		"readiness probe on the API port": {
			kustomization: deploymentPatch(`
- op: replace
  path: /spec/template/spec/containers/0/readinessProbe/httpGet/port
  value: http`),
			rule: "probes", want: "readiness probe port http is 8080",
		},
		"admin address moved without the ports": {
			kustomization: envPatch(`
- name: GATEWAY_ADMIN_ADDR
  value: ":9091"`),
			rule: "probes", want: "GATEWAY_ADMIN_ADDR resolves to 9091",
		},
		"readOnlyRootFilesystem removed": {
			kustomization: deploymentPatch(`
- op: remove
  path: /spec/template/spec/containers/0/securityContext/readOnlyRootFilesystem`),
			rule: kubeScore + "container-security-context-readonlyrootfilesystem",
		},
		"capability added": {
			kustomization: deploymentPatch(`
- op: add
  path: /spec/template/spec/containers/0/securityContext/capabilities/add
  value: [NET_ADMIN]`),
			rule: "security-context", want: "adds capabilities",
		},
		"issuer discovery bound to another role": {
			kustomization: jsonPatch("ClusterRoleBinding", `
- op: replace
  path: /roleRef/name
  value: cluster-admin`),
			rule: "issuer-discovery", want: `binds ClusterRole "cluster-admin"`,
		},
		"own token for another audience": {
			kustomization: deploymentPatch(`
- op: add
  path: /spec/template/spec/volumes/1/projected/sources/0/serviceAccountToken/audience
  value: bluetape-gateway`),
			rule: "secret-files", want: "the API server takes its default audience only",
		},
		"no egress to the API server": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: remove
  path: /spec/egress/2`),
			rule: "network-policy", want: "no egress to 6443/TCP",
		},
		"runs as root": {
			kustomization: deploymentPatch(`
- op: replace
  path: /spec/template/spec/securityContext/runAsUser
  value: 0`),
			rule: kubeScore + "container-security-context-user-group-id",
		},
		"misspelt variable": {
			kustomization: envPatch(`
- name: GATEWAY_DRAIN_DELAYS
  value: 10s`),
			rule: "env-names", want: "GATEWAY_DRAIN_DELAYS is not a variable the gateway reads",
		},
		"key as plain env": {
			kustomization: envPatch(`
- name: BLUETAPE_API_KEY
  value: not-a-real-key`),
			rule: "secret-env", want: "BLUETAPE_API_KEY is set",
		},
		"secret as env from secretKeyRef": {
			kustomization: envPatch(`
- name: GATEWAY_TRUSTED_PROXIES
  valueFrom:
    secretKeyRef: {name: bluetape-gateway, key: api-key}`),
			rule: "secret-env", want: "comes from a Secret as plain environment",
		},
		"redis url as environment": {
			kustomization: envPatch(`
- name: GATEWAY_REDIS_URL
  valueFrom:
    secretKeyRef: {name: bluetape-gateway-redis, key: url}`),
			rule: "secret-env", want: "GATEWAY_REDIS_URL is set; the Redis URL comes from a mounted Secret file",
		},
		"secret file outside the mount": {
			kustomization: envPatch(`
- name: BLUETAPE_API_KEY_FILE
  value: /etc/bluetape/api-key`),
			rule: "secret-files", want: "lies inside no volume mount",
		},
		"secret file not a key of the Secret": {
			kustomization: envPatch(`
- name: GATEWAY_CALLERS_FILE
  value: /var/run/secrets/bluetape/callers.yml`),
			rule: "secret-files", want: `key "callers.yml" is not documented`,
		},
		"secret mounted with subPath": {
			kustomization: deploymentPatch(`
- op: add
  path: /spec/template/spec/containers/0/volumeMounts/0/subPath
  value: api-key`),
			rule: "secret-files", want: "uses subPath",
		},
		"secret volume replaced by emptyDir": {
			kustomization: deploymentPatch(`
- op: replace
  path: /spec/template/spec/volumes/0
  value: {name: bluetape-secrets, emptyDir: {}}`),
			rule: "secret-files", want: "is not a Secret",
		},
		"grace period too short": {
			kustomization: deploymentPatch(`
- op: replace
  path: /spec/template/spec/terminationGracePeriodSeconds
  value: 30`),
			rule: "shutdown", want: "terminationGracePeriodSeconds 30s does not exceed",
		},
		"unparsable drain delay": {
			kustomization: envPatch(`
- name: GATEWAY_DRAIN_DELAY
  value: "10"`),
			rule: "shutdown", want: "GATEWAY_DRAIN_DELAY: time: missing unit",
		},
		"preStop needs a shell": {
			kustomization: deploymentPatch(`
- op: add
  path: /spec/template/spec/containers/0/lifecycle
  value: {preStop: {exec: {command: [sleep, "10"]}}}`),
			rule: "shutdown", want: "preStop runs a command",
		},
		"replicas beside the autoscaler": {
			kustomization: deploymentPatch(`
- op: add
  path: /spec/replicas
  value: 3`),
			rule: kubeScore + "deployment-targeted-by-hpa-does-not-have-replicas-configured",
		},
		"service selects other pods": {
			kustomization: jsonPatch("Service", `
- op: replace
  path: /spec/selector
  value: {app.kubernetes.io/name: bluetape-gatway}`),
			rule: kubeScore + "service-targets-pod",
		},
		"autoscaler targets another deployment": {
			kustomization: jsonPatch("HorizontalPodAutoscaler", `
- op: replace
  path: /spec/scaleTargetRef/name
  value: gateway`),
			rule: kubeScore + "horizontalpodautoscaler-has-target",
		},
		"ingress publishes the admin port": {
			kustomization: jsonPatch("Ingress", `
- op: replace
  path: /spec/rules/0/http/paths/0/backend/service/port
  value: {name: admin}`),
			rule: "ingress", want: "does not reach the API port 8080",
		},
		"egress open to every port": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: add
  path: /spec/egress/-
  value: {}`),
			rule: "network-policy", want: "no ports: allows every port",
		},
		"admin port open to another namespace": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: replace
  path: /spec/ingress/1/from/0/namespaceSelector/matchLabels
  value: {kubernetes.io/metadata.name: default}`),
			rule: "network-policy", want: "admin port open to kubernetes.io/metadata.name=default",
		},
		"redis without egress": {
			kustomization: envPatch(`
- name: GATEWAY_REDIS_URL_FILE
  value: /var/run/secrets/bluetape/url`),
			rule: "network-policy", want: "no egress to 6379/TCP",
		},
		"redis egress without TLS and Sentinel": {
			overlay: "redis",
			kustomization: jsonPatch("NetworkPolicy", `
- op: remove
  path: /spec/egress/3/ports/2
- op: remove
  path: /spec/egress/3/ports/1`),
			rule: "network-policy", want: "no egress to 6380/TCP",
		},
		"redis egress without Sentinel": {
			overlay: "redis",
			kustomization: jsonPatch("NetworkPolicy", `
- op: remove
  path: /spec/egress/3/ports/2`),
			rule: "network-policy", want: "no egress to 26379/TCP",
		},
		"dns open to every address": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: remove
  path: /spec/egress/0/to`),
			rule: "network-policy", want: "DNS (53/UDP) open beyond the cluster DNS",
		},
		"https open to the cluster": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: remove
  path: /spec/egress/1/to`),
			rule: "network-policy", want: "HTTPS open to every address, the Kubernetes API server included",
		},
		"https open to a private range": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: remove
  path: /spec/egress/1/to/0/ipBlock/except/0`),
			rule: "network-policy", want: "reaches the private range 10.0.0.0/8 on 443",
		},
		"ingress class changed without its controller": {
			kustomization: jsonPatch("NetworkPolicy", `
- op: replace
  path: /spec/ingress/0/from/1/namespaceSelector/matchLabels
  value: {kubernetes.io/metadata.name: ingress-nginx}`),
			rule: "network-policy", want: "API port not open to the namespace labelled bluetape-gateway/ingress-class=nginx-internal",
		},
		"pdb blocks every eviction": {
			kustomization: jsonPatch("PodDisruptionBudget", `
- op: replace
  path: /spec/maxUnavailable
  value: 0`),
			rule: "pod-disruption-budget", want: "allows no eviction",
		},
		"no cpu request": {
			kustomization: deploymentPatch(`
- op: remove
  path: /spec/template/spec/containers/0/resources/requests/cpu`),
			rule: kubeScore + "container-resources",
		},
		"GOMEMLIMIT at the container limit": {
			kustomization: envPatch(`
- name: GOMEMLIMIT
  value: 256MiB`),
			rule: "resources", want: "GOMEMLIMIT=256MiB is above 95% of the memory limit 256Mi",
		},
		"no ephemeral-storage limit": {
			kustomization: deploymentPatch(`
- op: remove
  path: /spec/template/spec/containers/0/resources/limits/ephemeral-storage`),
			rule: kubeScore + "container-ephemeral-storage-request-and-limit",
		},
		"oversized dashboard": {
			kustomization: "resources:\n  - ../production\n  - big.yaml\n",
			files: map[string]string{
				"big.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  big.json: " +
					strings.Repeat("x", maxAppliedSize) + "\n",
			},
			rule: "object-size", want: "ConfigMap/big:",
		},
		"token mounted": {
			kustomization: deploymentPatch(`
- op: replace
  path: /spec/template/spec/automountServiceAccountToken
  value: true`),
			rule: "service-account", want: "automountServiceAccountToken is not false",
		},
		"no spread across nodes": {
			kustomization: deploymentPatch(`
- op: remove
  path: /spec/template/spec/topologySpreadConstraints/0`),
			rule: "topology-spread", want: "no topology spread across nodes",
		},
		"latest image": {
			kustomization: "resources:\n  - ../production\nimages:\n  - name: registry.example.com/bluetape/bluetape-gateway\n    newTag: latest\n",
			rule:          kubeScore + "container-image-tag",
		},
		"service monitor scrapes the API port": {
			kustomization: jsonPatch("ServiceMonitor", `
- op: replace
  path: /spec/endpoints/0/port
  value: http`),
			rule: "service-monitor", want: `port "http"; want the Service port "admin"`,
		},
		"overlay ships a Secret": {
			kustomization: "resources:\n  - ../production\n  - ../../examples\n",
			rule:          "kinds", want: "overlays must not contain Secrets",
		},
		"unknown field": {
			kustomization: deploymentPatch(`
- op: add
  path: /spec/template/spec/containers/0/livenessProbe/httpGet/paht
  value: /healthz`),
			want: `unknown field "paht"`,
		},
		"unknown kind": {
			kustomization: "resources:\n  - ../production\n  - job.yaml\n",
			files: map[string]string{
				"job.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n",
			},
			want: "unknown kind batch/v1 Job",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			overlay := filepath.Join(dir, "overlays", "broken-"+strings.ReplaceAll(name, " ", "-"))
			if err := os.MkdirAll(overlay, 0o755); err != nil {
				t.Fatal(err)
			}
			k := tc.kustomization
			if tc.overlay != "" {
				k = strings.Replace(k, "../production", "../"+tc.overlay, 1)
			}
			files := map[string]string{"kustomization.yaml": k}
			for f, body := range tc.files {
				files[f] = body
			}
			for f, body := range files {
				if err := os.WriteFile(filepath.Join(overlay, f), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.rule == "" {
				_, err := manifest.Render(overlay)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
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
			var got []string
			for _, rule := range deployRules {
				if rule.name == tc.rule {
					got = rule.check(r)
				}
			}
			for _, p := range got {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("rule %q reported %q; want a problem containing %q", tc.rule, got, tc.want)
		})
	}
}
