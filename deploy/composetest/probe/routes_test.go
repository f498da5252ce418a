package main

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestReadRoutes(t *testing.T) {
	got, err := readRoutes(filepath.Join("testdata", "route"))
	if err != nil {
		t.Fatal(err)
	}
	want := []route{
		{Iface: "eth1", Destination: "0.0.0.0", Gateway: "172.18.0.1", Mask: "0.0.0.0"},
		{Iface: "eth0", Destination: "172.21.0.0", Gateway: "0.0.0.0", Mask: "255.255.255.0"},
		{Iface: "eth1", Destination: "172.18.0.0", Gateway: "0.0.0.0", Mask: "255.255.0.0"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes: got %v, want %v", got, want)
	}
}

func TestProcIPv4(t *testing.T) {
	for _, c := range []struct {
		in, want string
		bad      bool
	}{
		{in: "0100007F", want: "127.0.0.1"},
		{in: "00000000", want: "0.0.0.0"},
		{in: "0035A8C0", want: "192.168.53.0"},
		{in: "7F", bad: true},
		{in: "zz00007F", bad: true},
	} {
		got, err := procIPv4(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("procIPv4(%q): got %q, %v, want %q (error: %v)", c.in, got, err, c.want, c.bad)
		}
	}
}
