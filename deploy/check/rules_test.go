package check

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/bluetape/bluetape-gateway/config"
	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// Values the contract fixes.
const (
	defaultListenAddr      = ":8080"
	defaultAdminAddr       = ":9090"
	defaultDrainDelay      = 0 * time.Second
	defaultShutdownTimeout = 20 * time.Second
	defaultBaseURL         = "https://api.bluetape.com/genericBthubService"

	healthPath  = "/healthz"
	readyPath   = "/readyz"
	metricsPath = "/metrics"
)

// Deployment conventions.
const (
	gatewayContainer    = "gateway"
	apiPortName         = "http"
	adminPortName       = "admin"
	monitoringNamespace = "monitoring"
	namespaceNameLabel  = "kubernetes.io/metadata.name"
	// ingressClassLabel marks the namespace of the ingress controller that
	// serves a class; the NetworkPolicy selects it by the Ingress's class.
	ingressClassLabel = "bluetape-gateway/ingress-class"
	// apiServerPort is where the Kubernetes API server usually listens
	// behind the kubernetes Service, as NetworkPolicies see it (after the
	// Service's 443 is translated).
	apiServerPort = 6443
)

// envRedisURLFile names the file holding the Redis URL, which may carry a
// password.
const envRedisURLFile = config.EnvRedisURLFile

// goRuntimeEnv are variables read by the Go runtime rather than by the
// gateway's configuration; the manifests may set them too.
var goRuntimeEnv = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG"}

// credentialEnv are the variables whose value is a credential. The manifests
// give them as files (the *_FILE variants) only.
var credentialEnv = []string{config.EnvAPIKey, config.EnvAccountID}

// redisConfigured reports whether w runs in shared mode.
func (w workload) redisConfigured() bool {
	_, url := w.env[config.EnvRedisURL]
	_, file := w.env[envRedisURLFile]
	return url || file
}

// rendered is one rendered overlay as the rules see it.
type rendered struct {
	objects []manifest.Object
	// examples are deploy/examples' Secrets by name: they document the keys
	// that the real Secrets carry.
	examples map[string]*corev1.Secret
	// monitoring is whether deploy/monitoring exists and so must be rendered.
	monitoring bool
}

// deployRule is one invariant. check returns one line per problem, each
// naming the object at fault.
type deployRule struct {
	name  string
	check func(r *rendered) []string
}

var deployRules = []deployRule{
	{"kinds", checkKinds},
	{"namespace", checkNamespace},
	{"object-size", checkObjectSize},
	{"container-ports", checkContainerPorts},
	{"probes", checkProbes},
	{"env-names", checkEnvNames},
	{"secret-env", checkSecretEnv},
	{"secret-files", checkSecretFiles},
	{"shutdown", checkShutdown},
	{"security-context", checkSecurityContext},
	{"service-account", checkServiceAccount},
	{"issuer-discovery", checkIssuerDiscovery},
	{"resources", checkResources},
	{"topology-spread", checkTopologySpread},
	{"service", checkService},
	{"ingress", checkIngress},
	{"network-policy", checkNetworkPolicy},
	{"pod-disruption-budget", checkPodDisruptionBudget},
	{"service-monitor", checkServiceMonitor},
}

// typedObjects returns the objects of type T, in render order.
func typedObjects[T any](objs []manifest.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Value.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// workload is the gateway's Deployment and container, with the values the
// gateway will derive from the container's environment.
type workload struct {
	d   *appsv1.Deployment
	c   *corev1.Container
	env map[string]corev1.EnvVar
}

func (w workload) String() string { return "Deployment/" + w.d.Name }

// podLabels returns the labels of the Deployment's pods.
func (w workload) podLabels() labels.Set { return w.d.Spec.Template.Labels }

// envValue returns the literal value of name, or def when it is unset.
func (w workload) envValue(name, def string) (string, error) {
	e, ok := w.env[name]
	if !ok {
		return def, nil
	}
	if e.ValueFrom != nil {
		return "", fmt.Errorf("%s: %s is set with valueFrom; the checks need a literal value", w, name)
	}
	return e.Value, nil
}

// envPort returns the port the gateway listens on for the address variable
// name, as the gateway resolves it.
func (w workload) envPort(name, def string) (int32, error) {
	addr, err := w.envValue(name, def)
	if err != nil {
		return 0, err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%s: %s=%q: %w", w, name, addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s: %s=%q: not a numeric port", w, name, addr)
	}
	return int32(n), nil
}

// envDuration returns the duration the gateway reads from name.
func (w workload) envDuration(name string, def time.Duration) (time.Duration, error) {
	s, err := w.envValue(name, def.String())
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", w, name, err)
	}
	return d, nil
}

// containerPort resolves p, a port number or name, against the container's
// declared ports.
func (w workload) containerPort(p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range w.c.Ports {
		if p.Type == intstr.Int && cp.ContainerPort == p.IntVal ||
			p.Type == intstr.String && cp.Name == p.StrVal {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

// workloads returns the gateway container of every Deployment, and a problem
// for every Deployment without one.
func workloads(r *rendered) ([]workload, []string) {
	var out []workload
	var problems []string
	for _, d := range typedObjects[*appsv1.Deployment](r.objects) {
		i := slices.IndexFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool {
			return c.Name == gatewayContainer
		})
		if i < 0 {
			problems = append(problems, fmt.Sprintf("Deployment/%s: no container named %q", d.Name, gatewayContainer))
			continue
		}
		w := workload{d: d, c: &d.Spec.Template.Spec.Containers[i], env: make(map[string]corev1.EnvVar)}
		for _, e := range w.c.Env {
			w.env[e.Name] = e
		}
		out = append(out, w)
	}
	return out, problems
}

// forEachWorkload runs f on every gateway workload and gathers problems.
func forEachWorkload(r *rendered, f func(w workload) []string) []string {
	ws, problems := workloads(r)
	for _, w := range ws {
		problems = append(problems, f(w)...)
	}
	return problems
}

// withPorts runs f on every gateway workload whose API and admin ports
// resolve, and reports those that do not.
func withPorts(r *rendered, f func(w workload, api, admin int32) []string) []string {
	return forEachWorkload(r, func(w workload) []string {
		api, admin, problems := w.ports()
		if len(problems) > 0 {
			return problems
		}
		return f(w, api, admin)
	})
}

// ports returns the gateway's API and admin ports for w.
func (w workload) ports() (api, admin int32, problems []string) {
	api, err := w.envPort(config.EnvListenAddr, defaultListenAddr)
	if err != nil {
		problems = append(problems, err.Error())
	}
	admin, err = w.envPort(config.EnvAdminAddr, defaultAdminAddr)
	if err != nil {
		problems = append(problems, err.Error())
	}
	return api, admin, problems
}

// selects reports whether sel is a non-empty selector matching set.
func selects(sel *metav1.LabelSelector, set labels.Set) (bool, error) {
	if sel == nil || len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
		return false, fmt.Errorf("empty selector selects every pod in the namespace")
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(set), nil
}

func checkKinds(r *rendered) []string {
	var problems []string
	want := []string{"ServiceAccount", "ClusterRoleBinding", "Deployment", "Service", "Ingress", "NetworkPolicy",
		"PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"}
	if r.monitoring {
		want = append(want, "PrometheusRule")
	}
	count := make(map[string]int)
	for _, o := range r.objects {
		count[o.Kind]++
		if o.Kind == "Secret" {
			// "kubectl apply -k" would overwrite the real Secret.
			problems = append(problems, fmt.Sprintf("%s: overlays must not contain Secrets; they are created from files (see deploy/examples)", o))
		}
	}
	for _, k := range want {
		if count[k] == 0 {
			problems = append(problems, fmt.Sprintf("no %s rendered", k))
		}
	}
	if n := count["Deployment"]; n > 1 {
		problems = append(problems, fmt.Sprintf("%d Deployments rendered; want one", n))
	}
	return problems
}

// checkNamespace keeps every object in one namespace, so that selectors
// and the Service's DNS name mean the same objects.
func checkNamespace(r *rendered) []string {
	var problems []string
	namespaces := make(map[string]bool)
	for _, o := range r.objects {
		if clusterScoped(o.Kind) {
			if o.Namespace != "" {
				problems = append(problems, fmt.Sprintf("%s: a cluster-scoped object has a namespace", o))
			}
		} else {
			if o.Namespace == "" {
				problems = append(problems, fmt.Sprintf("%s: no namespace", o))
			}
			namespaces[o.Namespace] = true
		}
	}
	if len(namespaces) > 1 {
		problems = append(problems, fmt.Sprintf("objects span namespaces %v; want one", slices.Sorted(maps.Keys(namespaces))))
	}
	return problems
}

// clusterScoped reports whether objects of kind have no namespace.
func clusterScoped(kind string) bool { return kind == "Namespace" || kind == "ClusterRoleBinding" }

// maxAppliedSize is the limit on an object's annotations, which client-side
// "kubectl apply" fills with the whole object (last-applied-configuration).
const maxAppliedSize = 256 << 10

func checkObjectSize(r *rendered) []string {
	var problems []string
	for _, o := range r.objects {
		data, err := json.Marshal(o.Value)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", o, err))
			continue
		}
		if len(data) >= maxAppliedSize {
			problems = append(problems, fmt.Sprintf("%s: %d bytes; kubectl apply stores objects of at most %d bytes", o, len(data), maxAppliedSize))
		}
	}
	return problems
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func checkContainerPorts(r *rendered) []string {
	return withPorts(r, func(w workload, api, admin int32) []string {
		var problems []string
		for _, want := range []struct {
			name, env string
			port      int32
		}{
			{apiPortName, config.EnvListenAddr, api},
			{adminPortName, config.EnvAdminAddr, admin},
		} {
			cp, ok := w.containerPort(intstr.FromString(want.name))
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: no container port named %q", w, want.name))
			case cp.ContainerPort != want.port:
				problems = append(problems, fmt.Sprintf("%s: container port %q is %d but %s resolves to %d",
					w, want.name, cp.ContainerPort, want.env, want.port))
			case cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP:
				problems = append(problems, fmt.Sprintf("%s: container port %q is %s; want TCP", w, want.name, cp.Protocol))
			}
		}
		return problems
	})
}

func checkProbes(r *rendered) []string {
	return withPorts(r, func(w workload, _, admin int32) []string {
		var problems []string
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			paths []string
		}{
			{"startup", w.c.StartupProbe, []string{healthPath, readyPath}},
			{"liveness", w.c.LivenessProbe, []string{healthPath}},
			{"readiness", w.c.ReadinessProbe, []string{readyPath}},
		} {
			if p.probe == nil {
				problems = append(problems, fmt.Sprintf("%s: no %s probe", w, p.kind))
				continue
			}
			get := p.probe.HTTPGet
			if get == nil {
				problems = append(problems, fmt.Sprintf("%s: %s probe is not an HTTP GET", w, p.kind))
				continue
			}
			if !slices.Contains(p.paths, get.Path) {
				problems = append(problems, fmt.Sprintf("%s: %s probe path %q; want one of %q", w, p.kind, get.Path, p.paths))
			}
			if get.Scheme != "" && get.Scheme != corev1.URISchemeHTTP {
				problems = append(problems, fmt.Sprintf("%s: %s probe scheme %s; the admin listener speaks HTTP", w, p.kind, get.Scheme))
			}
			cp, ok := w.containerPort(get.Port)
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: %s probe port %s is not a declared container port", w, p.kind, get.Port.String()))
			case cp.ContainerPort != admin:
				problems = append(problems, fmt.Sprintf("%s: %s probe port %s is %d; %s resolves to %d",
					w, p.kind, get.Port.String(), cp.ContainerPort, config.EnvAdminAddr, admin))
			}
		}
		return problems
	})
}

func checkEnvNames(r *rendered) []string {
	known := append(config.Names(), goRuntimeEnv...)
	known = append(known, envRedisURLFile)
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		for _, e := range w.c.Env {
			if !slices.Contains(known, e.Name) {
				problems = append(problems, fmt.Sprintf("%s: %s is not a variable the gateway reads", w, e.Name))
			}
		}
		if len(w.c.EnvFrom) > 0 {
			problems = append(problems, fmt.Sprintf("%s: envFrom puts names the checks cannot see into the environment", w))
		}
		return problems
	})
}

var secretishName = regexp.MustCompile(`KEY|TOKEN|PASSWORD|SECRET|CREDENTIAL|ACCOUNT_ID`)

func checkSecretEnv(r *rendered) []string {
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		for _, name := range credentialEnv {
			if _, ok := w.env[name]; ok {
				problems = append(problems, fmt.Sprintf("%s: %s is set; credentials come from files (%s_FILE)", w, name, name))
			}
			if _, ok := w.env[name+"_FILE"]; !ok {
				problems = append(problems, fmt.Sprintf("%s: %s_FILE is not set; the gateway cannot start without it", w, name))
			}
		}
		for _, e := range w.c.Env {
			switch {
			case e.Name == config.EnvRedisURL:
				// The URL may hold a password: a file rotates, an environment variable does not.
				problems = append(problems, fmt.Sprintf("%s: %s is set; the Redis URL comes from a mounted Secret file (%s)", w, e.Name, envRedisURLFile))
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				problems = append(problems, fmt.Sprintf("%s: %s comes from a Secret as plain environment; mount it as a file", w, e.Name))
			case e.Value != "" && secretishName.MatchString(e.Name) && !strings.HasSuffix(e.Name, "_FILE"):
				problems = append(problems, fmt.Sprintf("%s: %s has a literal value; secrets never go in the manifest", w, e.Name))
			case urlHasPassword(e.Value):
				problems = append(problems, fmt.Sprintf("%s: %s holds a URL with a password", w, e.Name))
			}
		}
		return problems
	})
}

func urlHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

func exampleHasKey(r *rendered, secret, key string) bool {
	s, ok := r.examples[secret]
	if !ok {
		return false
	}
	_, inData := s.Data[key]
	_, inStringData := s.StringData[key]
	return inData || inStringData
}

// fileEnv reports whether name is a variable holding a secret file's path.
func fileEnv(name string) bool { return strings.HasSuffix(name, "_FILE") }

func checkSecretFiles(r *rendered) []string {
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		for _, e := range w.c.Env {
			if !fileEnv(e.Name) && e.Name != config.EnvConfig {
				continue
			}
			if e.ValueFrom != nil {
				problems = append(problems, fmt.Sprintf("%s: %s: want a literal path", w, e.Name))
				continue
			}
			p := e.Value
			if !path.IsAbs(p) || path.Clean(p) != p {
				problems = append(problems, fmt.Sprintf("%s: %s=%q: want a clean absolute path", w, e.Name, p))
				continue
			}
			i := slices.IndexFunc(w.c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
			})
			if i < 0 {
				problems = append(problems, fmt.Sprintf("%s: %s=%q lies inside no volume mount", w, e.Name, p))
				continue
			}
			m := w.c.VolumeMounts[i]
			rel := strings.TrimPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
			if m.SubPath != "" || m.SubPathExpr != "" {
				problems = append(problems, fmt.Sprintf("%s: mount %q uses subPath; a rotated Secret never reaches such a mount", w, m.Name))
			}
			if !m.ReadOnly {
				problems = append(problems, fmt.Sprintf("%s: mount %q is not readOnly", w, m.Name))
			}
			vi := slices.IndexFunc(w.d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
			if vi < 0 {
				problems = append(problems, fmt.Sprintf("%s: mount %q names no volume", w, m.Name))
				continue
			}
			v := w.d.Spec.Template.Spec.Volumes[vi]
			if e.Name == config.EnvConfig && v.Secret == nil && v.ConfigMap == nil {
				problems = append(problems, fmt.Sprintf("%s: %s: volume %q is neither a Secret nor a ConfigMap", w, e.Name, v.Name))
				continue
			}
			if e.Name == config.EnvConfig {
				continue
			}
			if v.Projected != nil && (e.Name == config.EnvJWTCAFile || e.Name == config.EnvJWTAuthTokenFile) {
				problems = append(problems, checkIdentityFile(w, e.Name, v, rel)...)
				continue
			}
			if v.Secret == nil {
				problems = append(problems, fmt.Sprintf("%s: %s=%q: volume %q is not a Secret", w, e.Name, p, v.Name))
				continue
			}
			key := rel
			if len(v.Secret.Items) > 0 {
				j := slices.IndexFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == rel })
				if j < 0 {
					problems = append(problems, fmt.Sprintf("%s: %s=%q: volume %q has no item with path %q", w, e.Name, p, v.Name, rel))
					continue
				}
				key = v.Secret.Items[j].Key
			}
			if v.Secret.Optional != nil && *v.Secret.Optional {
				problems = append(problems, fmt.Sprintf("%s: volume %q is optional; the gateway needs its files", w, v.Name))
			}
			if !exampleHasKey(r, v.Secret.SecretName, key) {
				problems = append(problems, fmt.Sprintf("%s: %s=%q: Secret %q key %q is not documented in deploy/examples",
					w, e.Name, p, v.Secret.SecretName, key))
			}
		}
		return problems
	})
}

// checkIdentityFile checks the file of the gateway's own service-account
// token or of the cluster's CA in a projected volume: the token is
// projected (the kubelet rotates it) for the API server's default audience,
// the CA comes from the kube-root-ca.crt ConfigMap every namespace has.
func checkIdentityFile(w workload, env string, v corev1.Volume, rel string) []string {
	for _, src := range v.Projected.Sources {
		switch {
		case env == config.EnvJWTAuthTokenFile && src.ServiceAccountToken != nil && src.ServiceAccountToken.Path == rel:
			if src.ServiceAccountToken.Audience != "" {
				return []string{fmt.Sprintf("%s: %s: the token's audience is %q; the API server takes its default audience only",
					w, env, src.ServiceAccountToken.Audience)}
			}
			return nil
		case env == config.EnvJWTCAFile && src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt":
			if slices.ContainsFunc(src.ConfigMap.Items, func(it corev1.KeyToPath) bool { return it.Key == "ca.crt" && it.Path == rel }) {
				return nil
			}
		}
	}
	return []string{fmt.Sprintf("%s: %s: projected volume %q provides no %q from the expected source", w, env, v.Name, rel)}
}

// checkIssuerDiscovery checks that, when the gateway verifies callers'
// tokens, its ServiceAccount may read the API server's discovery document
// and keys, and nothing else.
func checkIssuerDiscovery(r *rendered) []string {
	var problems []string
	bindings := typedObjects[*rbacv1.ClusterRoleBinding](r.objects)
	for _, b := range bindings {
		obj := "ClusterRoleBinding/" + b.Name
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != "system:service-account-issuer-discovery" {
			problems = append(problems, fmt.Sprintf("%s: binds %s %q; the gateway needs system:service-account-issuer-discovery only",
				obj, b.RoleRef.Kind, b.RoleRef.Name))
		}
	}
	return append(problems, forEachWorkload(r, func(w workload) []string {
		if _, ok := w.env[config.EnvJWTIssuer]; !ok {
			return nil
		}
		sa := w.d.Spec.Template.Spec.ServiceAccountName
		for _, b := range bindings {
			for _, s := range b.Subjects {
				if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == w.d.Namespace {
					return nil
				}
			}
		}
		return []string{fmt.Sprintf("%s: %s is set but no ClusterRoleBinding lets ServiceAccount %s/%s read the issuer's keys",
			w, config.EnvJWTIssuer, w.d.Namespace, sa)}
	})...)
}

func checkShutdown(r *rendered) []string {
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		drain, err := w.envDuration(config.EnvDrainDelay, defaultDrainDelay)
		if err != nil {
			return []string{err.Error()}
		}
		shutdown, err := w.envDuration(config.EnvShutdownTimeout, defaultShutdownTimeout)
		if err != nil {
			return []string{err.Error()}
		}
		if drain <= 0 {
			problems = append(problems, fmt.Sprintf("%s: %s is %v; endpoints need time to drop a stopping pod", w, config.EnvDrainDelay, drain))
		}
		grace := 30 * time.Second // the Kubernetes default
		if g := w.d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if grace <= drain+shutdown {
			problems = append(problems, fmt.Sprintf("%s: terminationGracePeriodSeconds %v does not exceed %s + %s = %v",
				w, grace, config.EnvDrainDelay, config.EnvShutdownTimeout, drain+shutdown))
		}
		// The image has no shell: exec hooks and probes cannot run.
		if l := w.c.Lifecycle; l != nil {
			for name, h := range map[string]*corev1.LifecycleHandler{"preStop": l.PreStop, "postStart": l.PostStart} {
				if h != nil && h.Exec != nil {
					problems = append(problems, fmt.Sprintf("%s: %s runs a command; the image has no shell or tools", w, name))
				}
			}
		}
		return problems
	})
}

// podSecurity evaluates pod specs with Kubernetes' own Pod Security
// Standards checks, as the PodSecurity admission controller does.
var podSecurity = must(policy.NewEvaluator(policy.DefaultChecks(), nil))

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// checkSecurityContext holds every Deployment's pods to the restricted Pod
// Security Standard: no host namespaces, privilege or escalation, every
// capability dropped, non-root, RuntimeDefault seccomp, and more.
func checkSecurityContext(r *rendered) []string {
	var problems []string
	restricted := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	for _, d := range typedObjects[*appsv1.Deployment](r.objects) {
		res := policy.AggregateCheckResults(podSecurity.EvaluatePod(restricted, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec))
		if !res.Allowed {
			problems = append(problems, fmt.Sprintf("Deployment/%s: violates the restricted Pod Security Standard: %s", d.Name, res.ForbiddenDetail()))
		}
	}
	return problems
}
func checkServiceAccount(r *rendered) []string {
	var problems []string
	accounts := typedObjects[*corev1.ServiceAccount](r.objects)
	for _, d := range typedObjects[*appsv1.Deployment](r.objects) {
		spec := d.Spec.Template.Spec
		obj := "Deployment/" + d.Name
		if spec.ServiceAccountName == "" || spec.ServiceAccountName == "default" {
			problems = append(problems, fmt.Sprintf("%s: runs as the namespace's default ServiceAccount", obj))
		} else if !slices.ContainsFunc(accounts, func(a *corev1.ServiceAccount) bool { return a.Name == spec.ServiceAccountName }) {
			problems = append(problems, fmt.Sprintf("%s: ServiceAccount %q is not rendered", obj, spec.ServiceAccountName))
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			problems = append(problems, fmt.Sprintf("%s: automountServiceAccountToken is not false", obj))
		}
	}
	for _, a := range accounts {
		if a.AutomountServiceAccountToken == nil || *a.AutomountServiceAccountToken {
			problems = append(problems, fmt.Sprintf("ServiceAccount/%s: automountServiceAccountToken is not false", a.Name))
		}
	}
	return problems
}

func checkResources(r *rendered) []string {
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		res := w.c.Resources
		if e, ok := w.env["GOMEMLIMIT"]; ok {
			soft, err := parseGoMemLimit(e.Value)
			lim, hasLim := res.Limits[corev1.ResourceMemory]
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s: GOMEMLIMIT=%q: %v", w, e.Value, err))
			case hasLim && soft > lim.Value()*95/100:
				// The runtime needs room for memory it does not count (stacks
				// of blocked threads, the binary): keep the soft limit clear.
				problems = append(problems, fmt.Sprintf("%s: GOMEMLIMIT=%s is above 95%% of the memory limit %s", w, e.Value, lim.String()))
			}
		}
		return problems
	})
}

// parseGoMemLimit parses GOMEMLIMIT's syntax: bytes with an optional B, KiB,
// MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	for i, suffix := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return 0, err
			}
			return v << (10 * (4 - i)), nil
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func checkTopologySpread(r *rendered) []string {
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		byNode := false
		for _, c := range w.d.Spec.Template.Spec.TopologySpreadConstraints {
			ok, err := selects(c.LabelSelector, w.podLabels())
			if err != nil || !ok {
				problems = append(problems, fmt.Sprintf("%s: topology spread on %s does not select the gateway's pods", w, c.TopologyKey))
				continue
			}
			if c.TopologyKey == corev1.LabelHostname {
				byNode = true
			}
		}
		if !byNode {
			problems = append(problems, fmt.Sprintf("%s: no topology spread across nodes (%s)", w, corev1.LabelHostname))
		}
		return problems
	})
}

// replicaFloor is the fewest replicas the gateway may run with: the
// autoscaler's minReplicas, else spec.replicas (both default to 1).
func replicaFloor(r *rendered, w workload) int32 {
	if hs := typedObjects[*autoscalingv2.HorizontalPodAutoscaler](r.objects); len(hs) > 0 {
		if hs[0].Spec.MinReplicas != nil {
			return *hs[0].Spec.MinReplicas
		}
		return 1
	}
	if w.d.Spec.Replicas != nil {
		return *w.d.Spec.Replicas
	}
	return 1
}

func checkPodDisruptionBudget(r *rendered) []string {
	return forEachWorkload(r, func(w workload) []string {
		var problems []string
		floor := int(replicaFloor(r, w))
		for _, p := range typedObjects[*policyv1.PodDisruptionBudget](r.objects) {
			obj := "PodDisruptionBudget/" + p.Name
			switch {
			case p.Spec.MaxUnavailable != nil && p.Spec.MinAvailable != nil:
				problems = append(problems, obj+": sets both maxUnavailable and minAvailable")
			case p.Spec.MaxUnavailable != nil:
				n, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, floor, true)
				if err != nil || n < 1 {
					problems = append(problems, fmt.Sprintf("%s: maxUnavailable %s allows no eviction at %d replicas; node drains would hang",
						obj, p.Spec.MaxUnavailable.String(), floor))
				}
			case p.Spec.MinAvailable != nil:
				n, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, floor, true)
				if err != nil || n >= floor {
					problems = append(problems, fmt.Sprintf("%s: minAvailable %s allows no eviction at %d replicas; node drains would hang",
						obj, p.Spec.MinAvailable.String(), floor))
				}
				if err == nil && n < 1 {
					problems = append(problems, fmt.Sprintf("%s: minAvailable %s protects nothing", obj, p.Spec.MinAvailable.String()))
				}
			} // kube-score (poddisruptionbudget-has-policy) reports neither set.
		}
		return problems
	})
}
