//go:build composetest

package composetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenPort is one port each service listens on, dialled by the
// segmentation probe.
var listenPort = map[string]int{
	"db": 5432, "queue": 6379, "app": 8080, "worker": 9102, "mail": 1025,
	"frontend": 8080, "jaeger": 4317, "otelcol": 4318, "prometheus": 9090, "nginx-exporter": 9113,
	"alertmanager": 9093, "postgres-exporter": 9187, "redis-exporter": 9121,
}

// segmentationRules are the and the README's statements, which the
// pairs derived from the files must include: source, target, allowed.
var segmentationRules = []struct {
	from, to string
	allowed  bool
}{
	{"app", "db", true}, {"app", "queue", true},
	{"frontend", "db", false}, {"frontend", "queue", false}, {"frontend", "worker", false}, {"frontend", "mail", false},
	{"mail", "db", false}, {"mail", "queue", false}, {"mail", "app", false},
	{"db", "queue", false},
	// Each exporter reaches the store it watches, and nothing else of
	// carteiro's but through observabilidade; the edge reaches none of
	// them; Alertmanager reaches Mailpit (its mails), not the stores.
	{"postgres-exporter", "db", true}, {"postgres-exporter", "queue", false}, {"postgres-exporter", "mail", false},
	{"redis-exporter", "queue", true}, {"redis-exporter", "db", false}, {"redis-exporter", "mail", false},
	{"frontend", "postgres-exporter", false}, {"frontend", "redis-exporter", false}, {"frontend", "alertmanager", false},
	{"alertmanager", "mail", true}, {"alertmanager", "db", false}, {"alertmanager", "queue", false},
	{"prometheus", "postgres-exporter", true}, {"prometheus", "redis-exporter", true}, {"prometheus", "alertmanager", true},
	// Spans go through the collector: the services and the edge reach it,
	// it reaches Jaeger, the edge does not reach Jaeger; Prometheus scrapes
	// its span metrics.
	{"app", "otelcol", true}, {"worker", "otelcol", true}, {"frontend", "otelcol", true},
	{"otelcol", "jaeger", true}, {"frontend", "jaeger", false}, {"prometheus", "otelcol", true},
	{"otelcol", "db", false}, {"otelcol", "queue", false}, {"otelcol", "mail", false},
}

// testSegmentation: which container may open which is derived from the
// networks in the compose files (two services may talk when they share a
// network), then probed from inside every container's network namespace:
// each target by name and by each of its addresses, so that a failed name
// lookup cannot pass for isolation, and an address on a network the source
// does not share must not answer either. Containers on internal networks
// only have no route out (their routing table and the host's isolation
// rules are read; nothing outside the project is dialled).
func (h *harness) testSegmentation(t *testing.T) {
	ctx := context.Background()
	cs, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs = running(cs) // a one-shot job's namespace is gone with it
	nets, err := h.project.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for _, r := range segmentationRules {
		if got := len(h.topo.Shared(r.from, r.to)) > 0; got != r.allowed {
			t.Errorf("files: %s → %s allowed %v, want %v (shared networks %v)", r.from, r.to, got, r.allowed, h.topo.Shared(r.from, r.to))
		}
	}
	// The containers are on the networks the files say.
	for _, svc := range sortedKeys(cs) {
		var got []string
		for full := range cs[svc].NetworkSettings.Networks {
			got = append(got, strings.TrimPrefix(full, h.project.Name+"_"))
		}
		slices.Sort(got)
		if !slices.Equal(got, h.topo.Networks[svc]) {
			t.Errorf("%s networks: got %v, want %v (the files)", svc, got, h.topo.Networks[svc])
		}
	}
	subnetOf := map[string]netip.Prefix{} // network (files' name) → subnet
	for name, n := range nets {
		if len(n.IPAM.Config) > 0 {
			subnetOf[name], _ = netip.ParsePrefix(n.IPAM.Config[0].Subnet)
		}
		if n.Internal != h.topo.Internal[name] {
			t.Errorf("network %s internal: got %v, want %v", name, n.Internal, h.topo.Internal[name])
		}
	}

	rules := isolationRules(t)
	var summary []string
	for _, src := range sortedKeys(cs) {
		t.Run(src, func(t *testing.T) {
			type target struct {
				addr    string
				to      string
				allowed bool
			}
			var targets []target
			for _, dst := range sortedKeys(cs) {
				port, ok := listenPort[dst]
				if dst == src || !ok {
					continue
				}
				p := strconv.Itoa(port)
				shared := h.topo.Shared(src, dst)
				targets = append(targets, target{net.JoinHostPort(dst, p), dst, len(shared) > 0})
				for full, ep := range cs[dst].NetworkSettings.Networks {
					name := strings.TrimPrefix(full, h.project.Name+"_")
					targets = append(targets, target{net.JoinHostPort(ep.IPAddress, p), dst + " (" + name + ")", slices.Contains(shared, name)})
				}
			}
			addrs := make([]string, len(targets))
			for i, tg := range targets {
				addrs[i] = tg.addr
			}
			rep, err := h.engine.DialFrom(ctx, h.probe, cs[src].ID, 2*time.Second, addrs)
			if err != nil {
				t.Fatal(err)
			}
			var can, cannot []string
			for i, d := range rep.Dials {
				tg := targets[i]
				if d.OK != tg.allowed {
					t.Errorf("%s → %s %s: got connected=%v (%s), want %v", src, tg.to, tg.addr, d.OK, d.Error, tg.allowed)
				}
				if d.OK {
					can = append(can, tg.addr)
				} else {
					cannot = append(cannot, tg.addr)
				}
			}

			// Routing table. A container on internal networks only has no
			// route out: either no default route at all, or (Engine 20.10
			// gives one through an internal network's bridge) a default
			// route whose traffic the host drops as soon as it leaves that
			// network's subnet: Docker's isolation rules for the bridge,
			// read from the host's iptables, nothing dialled.
			defaults := rep.DefaultRoutes()
			var via []string
			for iface, prefixes := range defaults {
				for _, p := range prefixes {
					for name, subnet := range subnetOf {
						if subnet != p {
							continue
						}
						if !h.topo.Internal[name] {
							via = append(via, iface+" on "+name)
							continue
						}
						if missing := isolationMissing(rules, nets[name].Bridge(), subnet.String()); len(missing) > 0 {
							t.Errorf("%s: default route via %s on internal network %s, and the host lacks %q", src, iface, name, missing)
						}
						via = append(via, iface+" on internal "+name+" (dropped beyond "+subnet.String()+")")
					}
				}
			}
			if h.topo.OnlyInternal(src) {
				for _, v := range via {
					if !strings.Contains(v, "internal") {
						t.Errorf("%s is on internal networks only: got a default route via %s", src, v)
					}
				}
			}
			routes := "no default route"
			if len(via) > 0 {
				routes = "default route via " + strings.Join(via, ", ")
			}
			summary = append(summary, fmt.Sprintf("  %-15s opens %d, cannot open %d (by name and by address); %s", src, len(can), len(cannot), routes))
		})
	}
	t.Logf("probed from every container's network namespace:\n%s", strings.Join(summary, "\n"))
}

// isolationRules is the host's DOCKER-ISOLATION-STAGE-1 chain (iptables
// -S), where Docker drops whatever would leave an internal network.
func isolationRules(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables", "-S", "DOCKER-ISOLATION-STAGE-1").CombinedOutput()
	need(t, err, "iptables -S DOCKER-ISOLATION-STAGE-1 (the host's isolation rules; root)")
	return string(out)
}

// isolationMissing returns the rules Docker writes for an internal bridge
// network (drop what enters the bridge from outside the subnet, and what
// leaves it for outside the subnet) that rules lacks.
func isolationMissing(rules, bridge, subnet string) []string {
	var missing []string
	for _, want := range []string{
		"-A DOCKER-ISOLATION-STAGE-1 ! -s " + subnet + " -o " + bridge + " -j DROP",
		"-A DOCKER-ISOLATION-STAGE-1 ! -d " + subnet + " -i " + bridge + " -j DROP",
	} {
		if !slices.Contains(strings.Split(rules, "\n"), want) {
			missing = append(missing, want)
		}
	}
	return missing
}
