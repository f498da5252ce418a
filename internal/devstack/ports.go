package devstack

import (
	"fmt"
	"net"
	"strings"
	"sync"
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

// Reserve binds a new free port on 127.0.0.1 and returns its address.
func (p *Ports) Reserve() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("reserve a port: %w", err)
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

// Close frees every reservation left.
func (p *Ports) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ln := range p.held {
		ln.Close()
	}
	p.held = nil
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
