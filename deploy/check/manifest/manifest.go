// Package manifest renders a kustomize directory and decodes every object it
// produces strictly into its Kubernetes API type: a field the type does not
// know is an error, and so is a kind this package does not know.
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Object is one rendered object.
type Object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Value is a pointer to the typed object, e.g. *appsv1.Deployment.
	Value any
}

// String returns "Kind/name", the way kubectl names an object.
func (o Object) String() string { return o.Kind + "/" + o.Name }

// newObject returns a new typed object for apiVersion and kind, or nil when
// the kind is not one the gateway's manifests are expected to contain.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return new(corev1.ConfigMap)
	case "v1 Namespace":
		return new(corev1.Namespace)
	case "v1 Secret":
		return new(corev1.Secret)
	case "v1 Service":
		return new(corev1.Service)
	case "v1 ServiceAccount":
		return new(corev1.ServiceAccount)
	case "apps/v1 Deployment":
		return new(appsv1.Deployment)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return new(autoscalingv2.HorizontalPodAutoscaler)
	case "networking.k8s.io/v1 Ingress":
		return new(networkingv1.Ingress)
	case "networking.k8s.io/v1 NetworkPolicy":
		return new(networkingv1.NetworkPolicy)
	case "policy/v1 PodDisruptionBudget":
		return new(policyv1.PodDisruptionBudget)
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return new(rbacv1.ClusterRoleBinding)
	case "monitoring.coreos.com/v1 PrometheusRule":
		return new(monitoringv1.PrometheusRule)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return new(monitoringv1.ServiceMonitor)
	}
	return nil
}

// run runs kustomize on dir, as "kubectl kustomize dir" would. Only files
// inside the kustomization roots may be loaded, and no plugins run.
func run(dir string) (resmap.ResMap, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return m, nil
}

// RenderYAML returns the objects kustomize renders from dir as one YAML
// stream, for tools that read manifests (kube-score).
func RenderYAML(dir string) ([]byte, error) {
	m, err := run(dir)
	if err != nil {
		return nil, err
	}
	return m.AsYaml()
}

// Render runs kustomize on dir and decodes every object strictly.
func Render(dir string) ([]Object, error) {
	m, err := run(dir)
	if err != nil {
		return nil, err
	}
	var objs []Object
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("rendering %s: encoding %s/%s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		o, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("rendering %s: %w", dir, err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// Decode decodes one object from JSON into its API type. Unknown fields,
// unknown kinds and trailing data are errors.
func Decode(data []byte) (Object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return Object{}, fmt.Errorf("decoding object: %w", err)
	}
	o := Object{
		APIVersion: meta.APIVersion,
		Kind:       meta.Kind,
		Namespace:  meta.Metadata.Namespace,
		Name:       meta.Metadata.Name,
	}
	o.Value = newObject(meta.APIVersion, meta.Kind)
	if o.Value == nil {
		return Object{}, fmt.Errorf("%s: unknown kind %s %s", o, meta.APIVersion, meta.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(o.Value); err != nil {
		return Object{}, fmt.Errorf("%s: decoding as %s %s: %w", o, meta.APIVersion, meta.Kind, err)
	}
	if dec.More() {
		return Object{}, fmt.Errorf("%s: trailing data after the object", o)
	}
	return o, nil
}
