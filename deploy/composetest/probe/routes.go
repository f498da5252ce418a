package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
)

// readRoutes parses the kernel's IPv4 routing table (proc(5),
// /proc/net/route): a header line, then Iface, Destination, Gateway, Flags,
// RefCnt, Use, Metric, Mask, ... with addresses as host-order hex.
func readRoutes(path string) ([]route, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var routes []route
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		fields := strings.Fields(sc.Text())
		if first || len(fields) == 0 {
			continue
		}
		if len(fields) < 8 {
			return nil, fmt.Errorf("%s: short line %q", path, sc.Text())
		}
		var addrs [3]string
		for i, field := range []string{fields[1], fields[2], fields[7]} {
			ip, err := procIPv4(field)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
			}
			addrs[i] = ip
		}
		routes = append(routes, route{Iface: fields[0], Destination: addrs[0], Gateway: addrs[1], Mask: addrs[2]})
	}
	return routes, sc.Err()
}

// procIPv4 turns /proc/net/route's 8 hex digits (the address as the kernel
// stores it, little-endian on the machines Docker runs on) into dotted form.
func procIPv4(h string) (string, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 4 {
		return "", fmt.Errorf("address %q: want 8 hex digits", h)
	}
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.LittleEndian.Uint32(b))
	return ip.String(), nil
}

// interfaces lists the namespace's interfaces with their addresses.
func interfaces() ([]iface, error) {
	list, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]iface, 0, len(list))
	for _, in := range list {
		addrs, err := in.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", in.Name, err)
		}
		one := iface{Name: in.Name}
		for _, a := range addrs {
			one.Addrs = append(one.Addrs, a.String())
		}
		out = append(out, one)
	}
	return out, nil
}
