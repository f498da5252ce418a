package devstack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play the devstack binary: as the
// supervisor (`supervise ...`, the same function cmd/devstack runs) and as
// the programs the tests' components run (`helper ...`).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case SuperviseCommand:
			if err := Supervise(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "supervise:", err)
				os.Exit(1)
			}
			os.Exit(0)
		case "helper":
			os.Exit(helper(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// helper is a component's program:
//
//	exit N             exit with status N at once
//	fail N             print two lines, exit with status N after 200 ms
//	sleep              sleep until a signal ends it
//	ignore-term ADDR   ignore SIGTERM, then listen on ADDR and sleep
//	serve ADDR DELAY   after DELAY, serve 200 on http://ADDR/ready until SIGTERM
//	up DIR NAME        start NAME (helper sleep) in a stack in DIR, then exit
func helper(args []string) int {
	switch args[0] {
	case "exit":
		n, _ := strconv.Atoi(args[1])
		return n
	case "fail":
		fmt.Println("starting the helper")
		fmt.Println("boom: the helper cannot go on")
		time.Sleep(200 * time.Millisecond)
		n, _ := strconv.Atoi(args[1])
		return n
	case "sleep":
		select {}
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		if _, err := net.Listen("tcp", args[1]); err != nil {
			return 2
		}
		select {}
	case "serve":
		d, _ := time.ParseDuration(args[2])
		time.Sleep(d)
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			fmt.Println(err)
			return 2
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ready" {
				http.NotFound(w, r)
			}
		})}
		go srv.Serve(ln)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		srv.Close()
		return 0
	case "up":
		s := testStackIn(args[1], nil)
		s.Components = []Component{helperComponent(args[2], "sleep")}
		if err := s.Up(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	return 2
}

// testStackIn is a stack in dir whose supervisor is this test binary, with
// short timeouts and no database or Redis.
func testStackIn(dir string, extra []string) *Stack {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	// The first value of a name wins: extra's.
	env := append(extra, "DEV_DIR="+dir, "PATH="+os.Getenv("PATH"), "READY_TIMEOUT=10", "STOP_TIMEOUT=5",
		"SKIP_DB_SETUP=1")
	c, err := Load(root, env)
	if err != nil {
		panic(err)
	}
	c.Supervisor, _ = os.Executable()
	return &Stack{Config: c}
}

// testStack is testStackIn a new folder, logging to the test; it is taken
// down when the test ends.
func testStack(t *testing.T, extra ...string) *Stack {
	t.Helper()
	s := testStackIn(t.TempDir(), extra)
	s.Log = t.Output()
	t.Cleanup(func() {
		if err := s.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	return s
}

// helperComponent is a component running `helper args...`.
func helperComponent(name string, args ...string) Component {
	self, _ := os.Executable()
	return Component{Name: name, Path: self, Args: append([]string{"helper"}, args...)}
}

// serving is a component serving http://addr/ready after delay.
func serving(name, addr string, delay time.Duration) Component {
	c := helperComponent(name, "serve", addr, delay.String())
	c.Listen = []string{addr}
	c.ReadyURL = "http://" + addr + "/ready"
	return c
}
