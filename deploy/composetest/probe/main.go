// Command probe is the compose test's look from inside a container's network
// namespace. deploy/composetest runs it in a helper container started with
// `docker run --network container:<target>`, so images without a shell or a
// TCP client (distroless, scratch) are probed the same way as the others.
//
//	probe [-timeout 2s] [HOST:PORT ...]
//
// It dials every HOST:PORT over TCP, all at once, each within -timeout, and
// reads the namespace's IPv4 routing table (/proc/net/route, the kernel's
// view; see proc(5)) and its interfaces. It prints one JSON document on
// stdout (see report) and exits 0 whatever the dials gave: the test decides
// what is allowed. It only connects and closes: nothing is sent.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "per-dial `limit` (a refused or unroutable dial returns sooner)")
	routeFile := fs.String("route-file", "/proc/net/route", "the IPv4 routing table to read, in the kernel's format")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	routes, err := readRoutes(*routeFile)
	if err != nil {
		return err
	}
	ifaces, err := interfaces()
	if err != nil {
		return err
	}
	rep := report{
		Dials:      dialAll(ctx, fs.Args(), *timeout),
		Routes:     routes,
		Interfaces: ifaces,
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
