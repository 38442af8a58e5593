package check

import (
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bluetape/bluetape-gateway/config"
)

// The rules about the gateway's traffic: which ports its Service, Ingress
// and ServiceMonitor reach, and what its NetworkPolicy lets in and out.

// redisPorts are the ports of the Redis URL forms the gateway accepts:
// redis:// (6379), rediss:// (6380) and Sentinel (26379). With Redis
// configured, egress must reach each.
var redisPorts = []protoPort{{corev1.ProtocolTCP, 6379}, {corev1.ProtocolTCP, 6380}, {corev1.ProtocolTCP, 26379}}

// clusterDNS is the pods' DNS: CoreDNS in kube-system, labelled k8s-app=kube-dns.
var clusterDNS = networkingv1.NetworkPolicyPeer{
	NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: "kube-system"}},
	PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
}

// servicePortTarget resolves a Service port to the container port it reaches.
func servicePortTarget(w workload, sp corev1.ServicePort) (corev1.ContainerPort, bool) {
	target := sp.TargetPort
	if target.Type == intstr.Int && target.IntVal == 0 {
		target = intstr.FromInt32(sp.Port)
	}
	return w.containerPort(target)
}

func checkService(r *rendered) []string {
	return withPorts(r, func(w workload, api, admin int32) []string {
		var problems []string
		for _, s := range typedObjects[*corev1.Service](r.objects) {
			for _, want := range []struct {
				name string
				port int32
			}{{apiPortName, api}, {adminPortName, admin}} {
				i := slices.IndexFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == want.name })
				if i < 0 {
					problems = append(problems, fmt.Sprintf("Service/%s: no port named %q", s.Name, want.name))
					continue
				}
				sp := s.Spec.Ports[i]
				cp, ok := servicePortTarget(w, sp)
				switch {
				case !ok:
					problems = append(problems, fmt.Sprintf("Service/%s: port %q targets %s, not a port of %s", s.Name, sp.Name, sp.TargetPort.String(), w))
				case cp.ContainerPort != want.port:
					problems = append(problems, fmt.Sprintf("Service/%s: port %q reaches container port %d; want %d", s.Name, sp.Name, cp.ContainerPort, want.port))
				}
				if sp.Port != want.port {
					problems = append(problems, fmt.Sprintf("Service/%s: port %q is %d; want %d", s.Name, sp.Name, sp.Port, want.port))
				}
			}
			if t := s.Spec.Type; t != "" && t != corev1.ServiceTypeClusterIP {
				problems = append(problems, fmt.Sprintf("Service/%s: type %s exposes the admin port outside the cluster; want ClusterIP", s.Name, t))
			}
		}
		return problems
	})
}

// checkIngress checks that every Ingress backend reaches the API port and
// nothing else. kube-score (ingress-targets-service) reports a backend
// naming no rendered Service or no port of it.
func checkIngress(r *rendered) []string {
	return withPorts(r, func(w workload, api, _ int32) []string {
		var problems []string
		services := typedObjects[*corev1.Service](r.objects)
		for _, ing := range typedObjects[*networkingv1.Ingress](r.objects) {
			backends := []*networkingv1.IngressBackend{ing.Spec.DefaultBackend}
			for _, rule := range ing.Spec.Rules {
				if rule.HTTP != nil {
					for _, p := range rule.HTTP.Paths {
						backends = append(backends, &p.Backend)
					}
				}
			}
			if len(backends) == 1 && backends[0] == nil {
				problems = append(problems, fmt.Sprintf("Ingress/%s: no backends", ing.Name))
			}
			for _, b := range backends {
				switch {
				case b == nil:
					continue
				case b.Service == nil:
					problems = append(problems, fmt.Sprintf("Ingress/%s: a backend is not a Service", ing.Name))
					continue
				}
				for _, s := range services {
					for _, sp := range s.Spec.Ports {
						byName := b.Service.Port.Name != ""
						if s.Name != b.Service.Name || byName && sp.Name != b.Service.Port.Name || !byName && sp.Port != b.Service.Port.Number {
							continue
						}
						if cp, ok := servicePortTarget(w, sp); !ok || cp.ContainerPort != api {
							problems = append(problems, fmt.Sprintf("Ingress/%s: backend %s/%s does not reach the API port %d; only the API may be published",
								ing.Name, s.Name, sp.Name, api))
						}
					}
				}
			}
		}
		return problems
	})
}

// protoPort is a NetworkPolicy port after resolving names.
type protoPort struct {
	proto corev1.Protocol
	port  int32
}

func (p protoPort) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

// policyPorts resolves the ports of rule what against the container's named
// ports, and reports the entries that open more than named ports.
func policyPorts(w workload, what string, ports []networkingv1.NetworkPolicyPort) ([]protoPort, []string) {
	var out []protoPort
	var problems []string
	if len(ports) == 0 {
		problems = append(problems, what+": no ports: allows every port")
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		switch {
		case p.Port == nil:
			problems = append(problems, fmt.Sprintf("%s: a %s port entry without a port allows every port", what, proto))
		case p.EndPort != nil:
			problems = append(problems, fmt.Sprintf("%s: port range %s-%d", what, p.Port.String(), *p.EndPort))
		case p.Port.Type == intstr.Int:
			out = append(out, protoPort{proto, p.Port.IntVal})
		default:
			if cp, ok := w.containerPort(*p.Port); ok {
				out = append(out, protoPort{proto, cp.ContainerPort})
			} else {
				problems = append(problems, fmt.Sprintf("%s: port %q is not a container port", what, p.Port.StrVal))
			}
		}
	}
	return out, problems
}

func checkNetworkPolicy(r *rendered) []string {
	return withPorts(r, func(w workload, api, admin int32) []string {
		var problems []string
		policies := typedObjects[*networkingv1.NetworkPolicy](r.objects)
		if len(policies) == 0 {
			return []string{fmt.Sprintf("%s: no NetworkPolicy", w)}
		}
		if base, err := w.envValue(config.EnvBaseURL, defaultBaseURL); err == nil {
			u, err := url.Parse(base)
			if err != nil || u.Scheme != "https" || u.Port() != "" && u.Port() != "443" {
				problems = append(problems, fmt.Sprintf("%s: %s=%q: egress allows HTTPS on 443 only", w, config.EnvBaseURL, base))
			}
		}
		for _, np := range policies {
			// kube-score (pod-networkpolicy) checks that a policy selects the
			// pods for both Ingress and Egress.
			obj := "NetworkPolicy/" + np.Name
			problems = append(problems, checkPolicyIngress(r, w, obj, np.Spec.Ingress, api, admin)...)
			problems = append(problems, checkPolicyEgress(w, obj, np.Spec.Egress)...)
		}
		return problems
	})
}

// checkPolicyIngress checks that the API port is open to labelled client
// namespaces and to the controller of every Ingress's class, and the admin
// port to the monitoring namespace only.
func checkPolicyIngress(r *rendered, w workload, obj string, rules []networkingv1.NetworkPolicyIngressRule, api, admin int32) []string {
	var problems []string
	var apiAllowed, adminAllowed bool
	var apiClasses []string
	for i, rule := range rules {
		what := fmt.Sprintf("%s ingress rule %d", obj, i)
		ports, msgs := policyPorts(w, what, rule.Ports)
		problems = append(problems, msgs...)
		if len(rule.From) == 0 {
			problems = append(problems, what+": no from: allows every source")
		}
		toAPI, toAdmin := false, false
		for _, p := range ports {
			switch {
			case p.port == api && p.proto == corev1.ProtocolTCP:
				apiAllowed, toAPI = true, true
			case p.port == admin && p.proto == corev1.ProtocolTCP:
				adminAllowed, toAdmin = true, true
			default:
				problems = append(problems, fmt.Sprintf("%s: port %s is neither the API nor the admin port", what, p))
			}
		}
		for _, peer := range rule.From {
			ns := peer.NamespaceSelector
			switch {
			case peer.IPBlock != nil:
				problems = append(problems, what+": ipBlock peer; allow namespaces by label")
			case ns == nil:
				problems = append(problems, what+": peer without namespaceSelector; allow namespaces by label")
			case len(ns.MatchLabels) == 0 && len(ns.MatchExpressions) == 0:
				problems = append(problems, what+": empty namespaceSelector allows every namespace")
			case toAdmin && ns.MatchLabels[namespaceNameLabel] != monitoringNamespace:
				problems = append(problems, fmt.Sprintf("%s: admin port open to %s; want the %s namespace only",
					what, metav1.FormatLabelSelector(ns), monitoringNamespace))
			case toAPI && ns.MatchLabels[ingressClassLabel] != "":
				apiClasses = append(apiClasses, ns.MatchLabels[ingressClassLabel])
			}
		}
	}
	if !apiAllowed {
		problems = append(problems, fmt.Sprintf("%s: no ingress to the API port %d", obj, api))
	}
	if !adminAllowed {
		problems = append(problems, fmt.Sprintf("%s: no ingress to the admin port %d: Prometheus cannot scrape", obj, admin))
	}
	for _, ing := range typedObjects[*networkingv1.Ingress](r.objects) {
		class := ptrString(ing.Spec.IngressClassName)
		if !slices.Contains(apiClasses, class) {
			problems = append(problems, fmt.Sprintf("%s: API port not open to the namespace labelled %s=%s, the controller of Ingress/%s's class (open to classes %q)",
				obj, ingressClassLabel, class, ing.Name, apiClasses))
		}
	}
	return problems
}

// checkPolicyEgress checks that egress is DNS to the cluster DNS, HTTPS to
// addresses outside the cluster, and with Redis the ports of its URL forms.
func checkPolicyEgress(w workload, obj string, rules []networkingv1.NetworkPolicyEgressRule) []string {
	dns := []protoPort{{corev1.ProtocolUDP, 53}, {corev1.ProtocolTCP, 53}}
	https := protoPort{corev1.ProtocolTCP, 443}
	required := append(slices.Clone(dns), https)
	if w.redisConfigured() {
		required = append(required, redisPorts...)
	}
	if _, ok := w.env[config.EnvJWTIssuer]; ok {
		// The API server behind the kubernetes Service, for the keys
		// that verify callers' tokens.
		required = append(required, protoPort{corev1.ProtocolTCP, apiServerPort})
	}
	var problems, inCluster []string
	var egress []protoPort
	for i, rule := range rules {
		what := fmt.Sprintf("%s egress rule %d", obj, i)
		ports, msgs := policyPorts(w, what, rule.Ports)
		problems = append(problems, msgs...)
		for _, p := range ports {
			switch {
			case !slices.Contains(required, p):
				problems = append(problems, fmt.Sprintf("%s: port %s; egress is DNS, HTTPS, (with an issuer) %d and (with Redis) %v only", what, p, apiServerPort, redisPorts))
			case slices.Contains(dns, p) && (len(rule.To) == 0 || slices.ContainsFunc(rule.To, notClusterDNS)):
				problems = append(problems, fmt.Sprintf("%s: DNS (%s) open beyond the cluster DNS (kube-system pods labelled k8s-app=kube-dns)", what, p))
			case p == https:
				inCluster = append(inCluster, httpsInCluster(what, rule.To)...)
			}
		}
		egress = append(egress, ports...)
	}
	problems = append(problems, inCluster...)
	for _, p := range required {
		if !slices.Contains(egress, p) {
			problems = append(problems, fmt.Sprintf("%s: no egress to %s", obj, p))
		}
	}
	return problems
}

func notClusterDNS(peer networkingv1.NetworkPolicyPeer) bool {
	return !reflect.DeepEqual(peer, clusterDNS)
}

// privateRanges are the address ranges of pods, Services and the API
// server's ClusterIP in common clusters; HTTPS egress must exclude them.
var privateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}

// httpsInCluster returns a problem for each way the peers of an HTTPS egress
// rule reach into the cluster: no peers at all, a selector peer, or an
// IPv4 block that keeps a private range.
func httpsInCluster(what string, to []networkingv1.NetworkPolicyPeer) []string {
	if len(to) == 0 {
		return []string{what + ": HTTPS open to every address, the Kubernetes API server included; allow ipBlocks outside the private ranges"}
	}
	var problems []string
	for _, peer := range to {
		if peer.IPBlock == nil {
			problems = append(problems, fmt.Sprintf("%s: HTTPS open to pods by selector; BlueTape is outside the cluster", what))
			continue
		}
		_, block, err := net.ParseCIDR(peer.IPBlock.CIDR)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: ipBlock %q: %v", what, peer.IPBlock.CIDR, err))
			continue
		}
		for _, r := range privateRanges {
			ip, _, _ := net.ParseCIDR(r)
			if block.Contains(ip) && !slices.Contains(peer.IPBlock.Except, r) {
				problems = append(problems, fmt.Sprintf("%s: ipBlock %s reaches the private range %s on 443; add it to except", what, peer.IPBlock.CIDR, r))
			}
		}
	}
	return problems
}

func checkServiceMonitor(r *rendered) []string {
	return withPorts(r, func(w workload, _, admin int32) []string {
		var problems []string
		for _, sm := range typedObjects[*monitoringv1.ServiceMonitor](r.objects) {
			obj := "ServiceMonitor/" + sm.Name
			var selected []*corev1.Service
			for _, s := range typedObjects[*corev1.Service](r.objects) {
				if ok, err := selects(&sm.Spec.Selector, s.Labels); err == nil && ok {
					selected = append(selected, s)
				}
			}
			if len(selected) == 0 {
				problems = append(problems, fmt.Sprintf("%s: selector %s matches no Service", obj, metav1.FormatLabelSelector(&sm.Spec.Selector)))
			}
			if len(sm.Spec.Endpoints) == 0 {
				problems = append(problems, obj+": no endpoints")
			}
			for _, ep := range sm.Spec.Endpoints {
				if ep.Path != metricsPath {
					problems = append(problems, fmt.Sprintf("%s: path %q; want %q", obj, ep.Path, metricsPath))
				}
				if ep.Port != adminPortName || ep.TargetPort != nil {
					problems = append(problems, fmt.Sprintf("%s: port %q; want the Service port %q", obj, ep.Port, adminPortName))
					continue
				}
				for _, s := range selected {
					i := slices.IndexFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == ep.Port })
					if i < 0 {
						problems = append(problems, fmt.Sprintf("%s: Service/%s has no port %q", obj, s.Name, ep.Port))
					} else if cp, ok := servicePortTarget(w, s.Spec.Ports[i]); !ok || cp.ContainerPort != admin {
						problems = append(problems, fmt.Sprintf("%s: Service/%s port %q does not reach the admin port %d", obj, s.Name, ep.Port, admin))
					}
				}
			}
			ns := sm.Spec.NamespaceSelector
			if !ns.Any && len(ns.MatchNames) > 0 && !slices.Contains(ns.MatchNames, w.d.Namespace) {
				problems = append(problems, fmt.Sprintf("%s: namespaceSelector %v excludes %s's namespace %q", obj, ns.MatchNames, w, w.d.Namespace))
			}
		}
		return problems
	})
}
