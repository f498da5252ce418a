// Command probe is the compose test's look from inside a container's network
// namespace. deploy/composetest runs it in a helper container started with
// `docker run --network container:<target>`, so images without a shell or a
// TCP client (distroless, scratch) are probed the same way as the others.
//
//	probe [-timeout 2s] [-read FILE]... [HOST:PORT ...]
//
// It dials every HOST:PORT over TCP, all at once, each within -timeout, and
// reads the namespace's IPv4 routing table (/proc/net/route, the kernel's
// view; see proc(5)) and its interfaces. Each -read FILE is opened and read
// as the user the probe runs as (the test runs it with a service's uid/gid
// and that service's mounts, `--volumes-from`): the report says whether that
// worked and how many bytes there were, never what they were. It prints one
// JSON document on stdout (see report) and exits 0 whatever the dials and
// reads gave: the test decides what is allowed. It only connects and closes:
// nothing is sent.
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
	var reads fileList
	fs.Var(&reads, "read", "a `file` to read (repeatable)")
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
		Reads:      readAll(reads),
		Routes:     routes,
		Interfaces: ifaces,
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// fileList is a repeatable string flag.
type fileList []string

func (l *fileList) String() string     { return fmt.Sprint(*l) }
func (l *fileList) Set(v string) error { *l = append(*l, v); return nil }
