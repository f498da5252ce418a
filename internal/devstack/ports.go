package devstack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ports reserves free loopback TCP ports for a stack on free ports (tests,
// benchmarks): each reserved port stays bound by a listener of this
// process, so no other reservation, and no other program on the machine,
// can take it, until Stack.Up releases it just before starting the
// component that listens there. The zero value is ready to use; it is safe
// for concurrent use.
type Ports struct {
	mu   sync.Mutex
	held map[string]net.Listener // by "127.0.0.1:port"
}

// Reserve binds a new free port on 127.0.0.1 (ListenFree) and returns its
// address.
func (p *Ports) Reserve() (string, error) {
	ln, err := ListenFree()
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = map[string]net.Listener{}
	}
	addr := ln.Addr().String()
	p.held[addr] = ln
	return addr, nil
}

// Hold reserves addr again (a listen address as Release takes it), for a
// component stopped for a while whose port must still be free when it
// starts again: until then no other program on the machine can take it.
// Holding an address already held is a no-op.
func (p *Ports) Hold(addr string) error {
	key := DialAddr(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.held[key]; ok {
		return nil
	}
	ln, err := net.Listen("tcp", key)
	if err != nil {
		return fmt.Errorf("hold %s: %w", key, err)
	}
	if p.held == nil {
		p.held = map[string]net.Listener{}
	}
	p.held[key] = ln
	return nil
}

// Release frees the reservation of addr (a listen address as a component
// takes it: "127.0.0.1:port", a bare port, or with nginx's parameters) and
// reports whether there was one.
func (p *Ports) Release(addr string) bool {
	key := DialAddr(addr)
	p.mu.Lock()
	ln, ok := p.held[key]
	delete(p.held, key)
	p.mu.Unlock()
	if ok {
		ln.Close()
	}
	return ok
}

// Held reports whether addr (as Release takes it) is reserved here.
func (p *Ports) Held(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.held[DialAddr(addr)]
	return ok
}

// Close frees every reservation left.
func (p *Ports) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ln := range p.held {
		ln.Close()
	}
	p.held = nil
}

// lowestPort is where ListenFree starts looking: above the registered
// ports that system services commonly use.
const lowestPort = 10000

// ListenFree binds a free TCP port on 127.0.0.1 that lies below the
// kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
// default). The kernel hands out ephemeral ports as the source ports of
// outgoing connections: a port taken from that range (what listening on
// port 0 returns) can become some connection's source port between the
// moment its reservation is released and the moment the component binds
// it, and the component then fails with "address already in use". A port
// below the range is never chosen that way. When the range leaves no room
// below it, ListenFree falls back to port 0.
func ListenFree() (net.Listener, error) {
	low := ephemeralLow()
	if low-lowestPort >= 1000 {
		for range 200 {
			port := lowestPort + rand.IntN(low-lowestPort)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err == nil {
				return ln, nil
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("reserve a port: %w", err)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("reserve a port: %w", err)
	}
	return ln, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// DialAddr turns a listen address into the host:port to connect to: nginx
// listen parameters after a space are dropped, a bare port and wildcard
// hosts ("", "*", 0.0.0.0, [::], ::) become 127.0.0.1.
func DialAddr(listen string) string {
	a, _, _ := strings.Cut(strings.TrimSpace(listen), " ")
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = "", a // a bare port
	}
	switch host {
	case "", "*", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// portZero reports whether a listen address asks for any free port
// (nothing can check or wait for it).
func portZero(listen string) bool {
	_, port, err := net.SplitHostPort(DialAddr(listen))
	return err == nil && port == "0"
}

// accepting reports whether something accepts TCP connections at addr.
func accepting(addr string) bool {
	c, err := net.DialTimeout("tcp", DialAddr(addr), 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
