//go:build composetest

package composetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
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
	"frontend": 8080, "jaeger": 4318, "prometheus": 9090, "nginx-exporter": 9113,
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
}

// testSegmentation: which container may open which is derived from the
// networks in the compose files (two services may talk when they share a
// network), then probed from inside every container's network namespace:
// each target by name and by each of its addresses, so that a failed name
// lookup cannot pass for isolation, and an address on a network the source
// does not share must not answer either. Containers on internal networks
// only have no default route (their routing table is read, nothing outside
// the project is dialled); a default route always leaves through a
// non-internal network.
func (h *harness) testSegmentation(t *testing.T) {
	ctx := context.Background()
	cs, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
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
			summary = append(summary, fmt.Sprintf("  %-15s opens %d, cannot open %d (by name and by address)", src, len(can), len(cannot)))

			// Routing table: a default route only through a non-internal
			// network; none at all when every network is internal.
			defaults := rep.DefaultRoutes()
			if h.topo.OnlyInternal(src) && len(defaults) > 0 {
				t.Errorf("%s is on internal networks only (%v): got default routes via %v, want none", src, h.topo.Networks[src], defaults)
			}
			for iface, prefixes := range defaults {
				for _, p := range prefixes {
					for name, subnet := range subnetOf {
						if subnet == p && h.topo.Internal[name] {
							t.Errorf("%s: default route via %s on internal network %s", src, iface, name)
						}
					}
				}
			}
		})
	}
	t.Logf("probed from every container's network namespace:\n%s", strings.Join(summary, "\n"))
}
