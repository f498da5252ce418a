package deploy

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The NetworkPolicies are evaluated here, as a NetworkPolicy implementation
// would (the API server stores them but enforces nothing), into
// (client → server:port/protocol) pairs between roles: carteiro's pods, by
// their compose service name, and a few endpoints outside the namespace:
//
//	outside        any address on the internet (192.0.2.10, TEST-NET-1)
//	observability  any pod of the observability namespace
//	dns            the cluster DNS (kube-system, k8s-app=kube-dns)
//	db, queue,     production: an address in the CIDR of the egress policy
//	mail           named to-postgres, to-redis, to-smtp-relay
//
// Those pairs must be exactly the ones carteiro uses, read from the
// services' own settings, and (DNS aside) a subset of what compose's
// networks allow.

// netEndpoint is one side of a connection.
type netEndpoint struct {
	role      string
	namespace string // "" outside the cluster
	labels    map[string]string
	ip        netip.Addr // outside the cluster
	ports     []corev1.ContainerPort
}

// flow is one (client → server:port/protocol) pair, by role.
type flow struct {
	from, to string
	port     int32
	protocol corev1.Protocol
}

func (f flow) String() string {
	return fmt.Sprintf("%s → %s:%d/%s", f.from, f.to, f.port, f.protocol)
}

const (
	kubeNamespace          = "carteiro"
	observabilityNamespace = "observability"
)

// externalPolicies name the production egress policies to services outside
// the cluster, by the compose service that plays that part.
var externalPolicies = map[string]string{"to-postgres": "db", "to-redis": "queue", "to-smtp-relay": "mail"}

// netEndpoints are the pods of m and the endpoints outside it.
func netEndpoints(t *testing.T, m *manifest, policies []*networkingv1.NetworkPolicy) []netEndpoint {
	t.Helper()
	var out []netEndpoint
	for _, w := range m.workloads(t) {
		var ports []corev1.ContainerPort
		for _, c := range w.pod.Spec.Containers {
			ports = append(ports, c.Ports...)
		}
		out = append(out, netEndpoint{role: w.name, namespace: kubeNamespace, labels: w.pod.Labels, ports: ports})
	}
	out = append(out,
		// OTLP gRPC and HTTP, Prometheus.
		netEndpoint{role: "observability", namespace: observabilityNamespace, labels: map[string]string{},
			ports: []corev1.ContainerPort{{ContainerPort: 4317}, {ContainerPort: 4318}, {ContainerPort: 9090}}},
		netEndpoint{role: "dns", namespace: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"},
			ports: []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 53}}},
		netEndpoint{role: "outside", ip: netip.MustParseAddr("192.0.2.10"),
			ports: []corev1.ContainerPort{{ContainerPort: 25}, {ContainerPort: 443}, {ContainerPort: 587}, {ContainerPort: 5432}, {ContainerPort: 6379}}},
	)
	for _, p := range policies {
		role, ok := externalPolicies[p.Name]
		if !ok {
			continue
		}
		for _, rule := range p.Spec.Egress {
			for _, peer := range rule.To {
				if peer.IPBlock == nil {
					t.Fatalf("NetworkPolicy %s: a peer that is not an ipBlock", p.Name)
				}
				prefix, err := netip.ParsePrefix(peer.IPBlock.CIDR)
				if err != nil {
					t.Fatalf("NetworkPolicy %s: %v", p.Name, err)
				}
				var ports []corev1.ContainerPort
				for _, port := range rule.Ports {
					ports = append(ports, corev1.ContainerPort{ContainerPort: port.Port.IntVal, Protocol: protocolOf(port.Protocol)})
				}
				out = append(out, netEndpoint{role: role, ip: prefix.Addr().Next(), ports: ports})
			}
		}
	}
	return out
}

func protocolOf(p *corev1.Protocol) corev1.Protocol {
	if p == nil || *p == "" {
		return corev1.ProtocolTCP
	}
	return *p
}

// namespaceLabels are a namespace's labels as the API server keeps them.
func namespaceLabels(m *manifest, ns string) labels.Set {
	set := labels.Set{"kubernetes.io/metadata.name": ns}
	for _, o := range m.ofKind("Namespace") {
		if o.GetName() == ns {
			for k, v := range o.GetLabels() {
				set[k] = v
			}
		}
	}
	return set
}

func selectorMatches(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

// peerMatches: does a policy peer (in the policy's own namespace) cover e?
func peerMatches(t *testing.T, m *manifest, peer networkingv1.NetworkPolicyPeer, e netEndpoint) bool {
	if peer.IPBlock != nil {
		if e.namespace != "" {
			return false // pod addresses are the selectors' business
		}
		prefix, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			t.Fatalf("ipBlock %s: %v", peer.IPBlock.CIDR, err)
		}
		for _, ex := range peer.IPBlock.Except {
			if p, err := netip.ParsePrefix(ex); err == nil && p.Contains(e.ip) {
				return false
			}
		}
		return prefix.Contains(e.ip)
	}
	if e.namespace == "" {
		return false
	}
	if peer.NamespaceSelector == nil {
		if e.namespace != kubeNamespace {
			return false
		}
	} else if !selectorMatches(t, peer.NamespaceSelector, namespaceLabels(m, e.namespace)) {
		return false
	}
	return peer.PodSelector == nil || selectorMatches(t, peer.PodSelector, e.labels)
}

// portMatches: does a policy port cover port/protocol on the server e?
// A named port is looked up on the server's containers.
func portMatches(p networkingv1.NetworkPolicyPort, server netEndpoint, port int32, protocol corev1.Protocol) bool {
	if protocolOf(p.Protocol) != protocol {
		return false
	}
	if p.Port == nil {
		return true
	}
	if p.Port.Type == intstr.String {
		for _, cp := range server.ports {
			if cp.Name == p.Port.StrVal && cp.ContainerPort == port && protocolOf(&cp.Protocol) == protocol {
				return true
			}
		}
		return false
	}
	if p.EndPort != nil {
		return port >= p.Port.IntVal && port <= *p.EndPort
	}
	return p.Port.IntVal == port
}

func rulePortsMatch(ports []networkingv1.NetworkPolicyPort, server netEndpoint, port int32, protocol corev1.Protocol) bool {
	return len(ports) == 0 || slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool {
		return portMatches(p, server, port, protocol)
	})
}

// allowedFlows evaluates the NetworkPolicies of m over every client,
// server and server port.
func allowedFlows(t *testing.T, m *manifest) []flow {
	t.Helper()
	var policies []*networkingv1.NetworkPolicy
	for _, o := range m.ofKind("NetworkPolicy") {
		policies = append(policies, typed[networkingv1.NetworkPolicy](t, o))
	}
	endpoints := netEndpoints(t, m, policies)
	selected := func(e netEndpoint, kind networkingv1.PolicyType) []*networkingv1.NetworkPolicy {
		var out []*networkingv1.NetworkPolicy
		if e.namespace != kubeNamespace {
			return nil // not ours: its own policies, if any, are not in this overlay
		}
		for _, p := range policies {
			if slices.Contains(p.Spec.PolicyTypes, kind) && selectorMatches(t, &p.Spec.PodSelector, e.labels) {
				out = append(out, p)
			}
		}
		return out
	}
	var out []flow
	for _, client := range endpoints {
		// Clients: carteiro's pods, the observability namespace, and anyone
		// outside (which the cluster DNS and the external services stand
		// for too).
		if client.namespace != kubeNamespace && client.role != "observability" && client.role != "outside" {
			continue
		}
		egress := selected(client, networkingv1.PolicyTypeEgress)
		for _, server := range endpoints {
			if server.role == client.role {
				continue
			}
			ingress := selected(server, networkingv1.PolicyTypeIngress)
			for _, sp := range server.ports {
				port, protocol := sp.ContainerPort, protocolOf(&sp.Protocol)
				// A pod no policy selects is not isolated in that direction.
				egressOK := client.namespace != kubeNamespace || len(egress) == 0 || slices.ContainsFunc(egress, func(p *networkingv1.NetworkPolicy) bool {
					return slices.ContainsFunc(p.Spec.Egress, func(r networkingv1.NetworkPolicyEgressRule) bool {
						return (len(r.To) == 0 || slices.ContainsFunc(r.To, func(peer networkingv1.NetworkPolicyPeer) bool { return peerMatches(t, m, peer, server) })) &&
							rulePortsMatch(r.Ports, server, port, protocol)
					})
				})
				ingressOK := server.namespace != kubeNamespace || len(ingress) == 0 || slices.ContainsFunc(ingress, func(p *networkingv1.NetworkPolicy) bool {
					return slices.ContainsFunc(p.Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool {
						return (len(r.From) == 0 || slices.ContainsFunc(r.From, func(peer networkingv1.NetworkPolicyPeer) bool { return peerMatches(t, m, peer, client) })) &&
							rulePortsMatch(r.Ports, server, port, protocol)
					})
				})
				// Only flows this namespace's policies decide: at least one
				// side must be a carteiro pod.
				if (client.namespace == kubeNamespace || server.namespace == kubeNamespace) && egressOK && ingressOK {
					f := flow{from: client.role, to: server.role, port: port, protocol: protocol}
					if !slices.Contains(out, f) {
						out = append(out, f)
					}
				}
			}
		}
	}
	return out
}

// usedFlows are the connections carteiro makes, from the services' own
// settings in the manifest (and so, through the sources tests, compose's).
func usedFlows(t *testing.T, m *manifest) []flow {
	t.Helper()
	tcp := func(from, to, port string) flow {
		n, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("%s → %s: port %q", from, to, port)
		}
		return flow{from: from, to: to, port: int32(n), protocol: corev1.ProtocolTCP}
	}
	app, worker, frontend := kubeEnv(t, m, "app"), kubeEnv(t, m, "worker"), kubeEnv(t, m, "frontend")
	upstream, _, _ := net.SplitHostPort(frontend["API_UPSTREAM"])
	out := []flow{
		// The edge is open to anyone, other namespaces included (compose's
		// k6 reaches frontend the same way, over observabilidade).
		tcp("outside", "frontend", frontend["NGINX_LISTEN"]),
		tcp("observability", "frontend", frontend["NGINX_LISTEN"]),
		tcp("frontend", upstream, portOf(frontend["API_UPSTREAM"])),
		tcp("worker", "mail", worker["SMTP_PORT"]),
	}
	for name, env := range map[string]map[string]string{"app": app, "worker": worker} {
		otlp, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out,
			tcp(name, "db", env["DB_PORT"]),
			tcp(name, "queue", portOf(env["REDIS_ADDR"])),
			tcp(name, "observability", otlp.Port()),
			tcp("observability", name, portOf(env["INTERNAL_ADDR"])),
		)
	}
	for _, w := range m.workloads(t) {
		out = append(out,
			flow{from: w.name, to: "dns", port: 53, protocol: corev1.ProtocolUDP},
			flow{from: w.name, to: "dns", port: 53, protocol: corev1.ProtocolTCP})
		// The exporters (components/exporters): to the store each watches,
		// from their settings, and Prometheus to their metrics port.
		c := w.pod.Spec.Containers[0]
		switch w.name {
		case "postgres-exporter":
			env := m.env(t, &c)
			uri := kubeExpand(env["DATA_SOURCE_URI"], env)
			hostport, _, _ := strings.Cut(uri, "/")
			out = append(out, tcp(w.name, "db", portOf(hostport)))
		case "redis-exporter":
			env := m.env(t, &c)
			for _, word := range strings.Fields(strings.Join(slices.Concat(c.Command, c.Args), " ")) {
				if addr, ok := strings.CutPrefix(word, "--redis.addr=redis://"); ok {
					out = append(out, tcp(w.name, "queue", portOf(kubeExpand(addr, env))))
				}
			}
		default:
			continue
		}
		out = append(out, tcp("observability", w.name, strconv.Itoa(int(containerPortByName(c, "metrics")))))
	}
	return out
}

// kubeExpand replaces the $(NAME) references of v with env's values, as the
// kubelet does in env values, commands and arguments (an unknown name stays
// as written).
func kubeExpand(v string, env map[string]string) string {
	return kubeVarRe.ReplaceAllStringFunc(v, func(ref string) string {
		if val, ok := env[ref[2:len(ref)-1]]; ok {
			return val
		}
		return ref
	})
}

var kubeVarRe = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

// composeReach says whether compose lets from reach to:port (a role of the
// Kubernetes side), and on which network or published port.
type composeReach func(from, to string, port int32) (bool, string)

// composeFlows models docker-compose.yml with the observability overlay: two
// services on a shared network reach each other on every port; a port
// published on a non-loopback address is reachable from outside.
// observability stands for the overlay's own services.
func composeFlows(p *types.Project) (composeReach, []string) {
	obsServices := slices.Clone(observabilityServices)
	members := func(role string) []string {
		if role == "observability" {
			return obsServices
		}
		return []string{role}
	}
	shared := func(a, b string) []string {
		var nets []string
		for n := range p.Services[a].Networks {
			if _, ok := p.Services[b].Networks[n]; ok {
				nets = append(nets, n)
			}
		}
		slices.Sort(nets)
		return nets
	}
	reach := func(from, to string, port int32) (bool, string) {
		for _, s := range members(to) {
			if from == "outside" {
				for _, pp := range p.Services[s].Ports {
					if !loopback(pp.HostIP) && int32(pp.Target) == port {
						return true, "published " + pp.Published
					}
				}
				continue
			}
			for _, c := range members(from) {
				if nets := shared(c, s); len(nets) > 0 {
					return true, strings.Join(nets, ", ")
				}
			}
		}
		return false, ""
	}
	// Every pair compose allows, for the report.
	var all []string
	names := sortedServiceNames(p)
	for _, a := range names {
		for _, b := range names {
			if a < b {
				if nets := shared(a, b); len(nets) > 0 {
					all = append(all, fmt.Sprintf("%s ↔ %s: every port, both ways (%s)", a, b, strings.Join(nets, ", ")))
				}
			}
		}
		for _, pp := range p.Services[a].Ports {
			where := "from outside"
			if loopback(pp.HostIP) {
				where = "from the host"
			}
			all = append(all, fmt.Sprintf("%s → %s:%d (published %s:%s)", where, a, pp.Target, pp.HostIP, pp.Published))
		}
	}
	return reach, all
}

// TestKubernetesNetworkPolicies compares the two deployments as
// (client → server:port) pairs.
func TestKubernetesNetworkPolicies(t *testing.T) {
	compose := projects(t)["base+observability"]
	reach, composeAll := composeFlows(compose)
	var report []string
	for _, overlay := range kubeOverlays {
		t.Run(overlay, func(t *testing.T) {
			m := loadManifest(t, overlay)
			allowed, used := allowedFlows(t, m), usedFlows(t, m)
			for _, f := range allowed {
				if !slices.Contains(used, f) {
					t.Errorf("allowed but not used by carteiro: %s", f)
				}
			}
			for _, f := range used {
				if !slices.Contains(allowed, f) {
					t.Errorf("used by carteiro but not allowed: %s", f)
				}
			}
			var kubePairs []string
			for _, f := range allowed {
				if f.to == "dns" {
					continue // compose resolves names inside Docker's embedded DNS
				}
				ok, how := reach(f.from, f.to, f.port)
				if !ok {
					t.Errorf("%s: allowed by the NetworkPolicies, not by compose's networks", f)
				}
				kubePairs = append(kubePairs, fmt.Sprintf("%s (compose: %s)", f, how))
			}
			slices.Sort(kubePairs)
			report = append(report, fmt.Sprintf("overlay %s: the NetworkPolicies allow exactly these %d flows (and DNS to kube-dns from every pod):", overlay, len(kubePairs)))
			for _, p := range kubePairs {
				report = append(report, "  "+p)
			}
		})
	}
	report = append(report, "compose's networks allow more: a shared network opens every port both ways:")
	for _, p := range composeAll {
		report = append(report, "  "+p)
	}
	kubeReport(t, "network", report)
}

// TestNetworkEvaluator: the evaluator itself, on policies small enough to
// reason about by hand.
func TestNetworkEvaluator(t *testing.T) {
	m := loadManifest(t, "dev").clone()
	for _, o := range m.ofKind("NetworkPolicy") {
		m.remove("NetworkPolicy", o.GetName())
	}
	// No policy at all: everything is allowed, including from outside.
	if f := (flow{"outside", "db", 5432, corev1.ProtocolTCP}); !slices.Contains(allowedFlows(t, m), f) {
		t.Errorf("without policies: %s not allowed, want everything allowed", f)
	}
	dev := loadManifest(t, "dev")
	deny := dev.get("NetworkPolicy", "default-deny").DeepCopy()
	m.objects = append(m.objects, deny)
	if got := allowedFlows(t, m); len(got) != 0 {
		t.Errorf("default deny alone: got %v, want nothing allowed", got)
	}
	// Egress without the matching ingress allows nothing; both, one flow.
	m.objects = append(m.objects, dev.get("NetworkPolicy", "frontend-to-app").DeepCopy())
	if got := allowedFlows(t, m); len(got) != 0 {
		t.Errorf("egress frontend → app alone: got %v, want nothing (app's ingress is denied)", got)
	}
	m.objects = append(m.objects, dev.get("NetworkPolicy", "app-from-frontend").DeepCopy())
	want := []flow{{"frontend", "app", 8080, corev1.ProtocolTCP}}
	if got := allowedFlows(t, m); !slices.Equal(got, want) {
		t.Errorf("frontend → app both ends: got %v, want %v", got, want)
	}
}

// kubeReport prints lines in the test log and, when KUBERNETES_REPORT names
// a file (make test), appends them there: go test shows a passing
// package's output only with -v.
func kubeReport(t *testing.T, title string, lines []string) {
	t.Helper()
	for _, l := range lines {
		t.Log(l)
	}
	path := os.Getenv("KUBERNETES_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s:\n%s\n", title, strings.Join(lines, "\n"))
}
