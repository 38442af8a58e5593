package check

import (
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/bluetape/bluetape-gateway/config"
	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

// clientLabel is the namespace label the gateway's NetworkPolicy admits.
const clientLabel = "bluetape-gateway/client"

// TestCallerExample renders deploy/examples/caller, decoding every object
// strictly, and checks what a caller team copies from it: its namespace
// is admitted by the gateway's NetworkPolicy, its pods run under their own
// ServiceAccount without the API token, and they get a projected token for
// the gateway's audience, mounted read-only.
func TestCallerExample(t *testing.T) {
	objs, err := manifest.Render(filepath.Join(deployDir, "examples", "caller"))
	if err != nil {
		t.Fatal(err)
	}
	audience := config.Default().JWTAudience
	namespaces := typedObjects[*corev1.Namespace](objs)
	accounts := typedObjects[*corev1.ServiceAccount](objs)
	deployments := typedObjects[*appsv1.Deployment](objs)
	if len(namespaces) != 1 || len(accounts) != 1 || len(deployments) != 1 {
		t.Fatalf("%d Namespaces, %d ServiceAccounts, %d Deployments; want one of each", len(namespaces), len(accounts), len(deployments))
	}
	ns, sa, d := namespaces[0], accounts[0], deployments[0]
	if ns.Labels[clientLabel] != "true" {
		t.Errorf("Namespace/%s: label %s is %q; want \"true\"", ns.Name, clientLabel, ns.Labels[clientLabel])
	}
	if sa.Namespace != ns.Name || d.Namespace != ns.Name {
		t.Errorf("ServiceAccount in %q, Deployment in %q; want both in %q", sa.Namespace, d.Namespace, ns.Name)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != sa.Name {
		t.Errorf("Deployment/%s runs as %q; want its own ServiceAccount %q", d.Name, spec.ServiceAccountName, sa.Name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken ||
		sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("the API token is mounted; only the gateway-bound token should be")
	}
	var tokenVolume string
	for _, v := range spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if sat := src.ServiceAccountToken; sat != nil {
				if sat.Audience != audience {
					t.Errorf("volume %q: token audience %q; want the gateway's %q", v.Name, sat.Audience, audience)
				}
				if sat.ExpirationSeconds == nil || *sat.ExpirationSeconds < 600 || *sat.ExpirationSeconds > 86400 {
					t.Errorf("volume %q: expirationSeconds %v; want 600 to 86400", v.Name, sat.ExpirationSeconds)
				}
				tokenVolume = v.Name
			}
		}
	}
	if tokenVolume == "" {
		t.Fatal("no projected serviceAccountToken volume")
	}
	for _, c := range spec.Containers {
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == tokenVolume })
		if i < 0 {
			t.Errorf("container %s does not mount the token", c.Name)
		} else if !c.VolumeMounts[i].ReadOnly {
			t.Errorf("container %s mounts the token read-write", c.Name)
		}
	}
}
