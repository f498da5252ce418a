package composetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// ProbeReport is what cmd probe prints (probe/report.go).
type ProbeReport struct {
	Dials []struct {
		Target string
		OK     bool
		Error  string
	}
	Reads []struct {
		Path  string
		OK    bool
		Bytes int
		Error string
	}
	Routes []struct {
		Iface       string
		Destination string
		Gateway     string
		Mask        string
	}
	Interfaces []struct {
		Name  string
		Addrs []string
	}
}

// probeRun is `docker run` of the probe image with everything it never
// needs taken away.
var probeRun = []string{"run", "--rm", "--cap-drop", "ALL", "--read-only",
	"--security-opt", "no-new-privileges:true", "--label", labelBuiltBy + "=probe"}

// DialFrom runs the probe inside container's network namespace and dials
// every target (HOST:PORT) from there, each within timeout; the report
// also has that namespace's routes and interfaces.
func (e *Engine) DialFrom(ctx context.Context, image, container string, timeout time.Duration, targets []string) (ProbeReport, error) {
	args := append(append([]string{}, probeRun...), "--network", "container:"+container, image, "-timeout", timeout.String())
	return e.probe(ctx, append(args, targets...))
}

// ReadAs runs the probe as uid:gid with container's volumes and bind
// mounts (read-only, no network) and reads files there.
func (e *Engine) ReadAs(ctx context.Context, image, container, uid, gid string, files []string) (ProbeReport, error) {
	args := append(append([]string{}, probeRun...), "--network", "none", "--volumes-from", container+":ro",
		"--user", uid+":"+gid, image)
	for _, f := range files {
		args = append(args, "-read", f)
	}
	return e.probe(ctx, args)
}

func (e *Engine) probe(ctx context.Context, args []string) (ProbeReport, error) {
	var rep ProbeReport
	out, err := e.Run(ctx, args...)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return rep, fmt.Errorf("probe report: %w: %s", err, tail(out, 10))
	}
	return rep, nil
}

// DefaultRoutes are the interfaces that carry a default route (destination
// and mask 0.0.0.0), with the prefixes of their addresses.
func (r ProbeReport) DefaultRoutes() map[string][]netip.Prefix {
	prefixes := map[string][]netip.Prefix{}
	for _, in := range r.Interfaces {
		for _, a := range in.Addrs {
			if p, err := netip.ParsePrefix(a); err == nil {
				prefixes[in.Name] = append(prefixes[in.Name], p.Masked())
			}
		}
	}
	out := map[string][]netip.Prefix{}
	for _, rt := range r.Routes {
		if rt.Destination == "0.0.0.0" && rt.Mask == "0.0.0.0" {
			out[rt.Iface] = prefixes[rt.Iface]
		}
	}
	return out
}
