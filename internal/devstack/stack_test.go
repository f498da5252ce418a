package devstack

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// supervise runs the supervisor (this test binary) on `helper args...`
// in dir and waits for it to end.
func supervise(t *testing.T, dir, name string, args ...string) *exec.Cmd {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{SuperviseCommand, dir, name, "--", self, "helper"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func readPID(t *testing.T, dir, name string) int {
	t.Helper()
	for range 500 {
		if b, err := os.ReadFile(filepath.Join(dir, name+".pid")); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s.pid", name)
	return 0
}

func TestSupervisorRecordsExitStatus(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		signal syscall.Signal
		want   int
	}{
		{"exit 0", []string{"exit", "0"}, 0, 0},
		{"exit 1", []string{"exit", "1"}, 0, 1},
		{"SIGKILL", []string{"sleep"}, syscall.SIGKILL, 128 + 9},
		{"SIGTERM", []string{"sleep"}, syscall.SIGTERM, 128 + 15},
		{"exit 3 after printing", []string{"fail", "3"}, 0, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := supervise(t, dir, "c", c.args...)
			pid := readPID(t, dir, "c")
			if c.signal != 0 {
				if err := syscall.Kill(pid, c.signal); err != nil {
					t.Fatal(err)
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("supervisor: %v", err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "c.exit"))
			if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(c.want) {
				t.Errorf("c.exit: got %q (%v), want %d", b, err, c.want)
			}
			s := testStackIn(dir, nil)
			if rc, ok := s.ExitStatus("c"); !ok || rc != c.want {
				t.Errorf("ExitStatus: got %d, %v, want %d", rc, ok, c.want)
			}
			r, err := s.readRecord("c")
			if err != nil || r.Process.PID != pid || r.Supervisor.PID != cmd.Process.Pid || r.Process.Start == 0 {
				t.Errorf("record: got %+v (%v), want pid %d under supervisor %d", r, err, pid, cmd.Process.Pid)
			}
		})
	}
	t.Run("program missing", func(t *testing.T) {
		dir := t.TempDir()
		self, _ := os.Executable()
		cmd := exec.Command(self, SuperviseCommand, dir, "c", "--", filepath.Join(dir, "no-such-program"))
		var out bytes.Buffer
		cmd.Stderr = &out
		if err := cmd.Run(); err == nil {
			t.Errorf("supervisor: got success, want an error")
		}
		if rc, ok := testStackIn(dir, nil).ExitStatus("c"); !ok || rc != 127 {
			t.Errorf("exit status: got %d, %v, want 127", rc, ok)
		}
		if !strings.Contains(out.String(), "no-such-program") {
			t.Errorf("log: got %q, want the program named", out.String())
		}
	})
}

// TestSupervisorForwardsSignals: signalling the supervisor is signalling
// its component.
func TestSupervisorForwardsSignals(t *testing.T) {
	dir := t.TempDir()
	cmd := supervise(t, dir, "c", "sleep")
	readPID(t, dir, "c")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if rc, ok := testStackIn(dir, nil).ExitStatus("c"); !ok || rc != 143 {
		t.Errorf("exit status: got %d, %v, want 143 (SIGTERM passed on)", rc, ok)
	}
}

func TestUpWaitsUntilReady(t *testing.T) {
	s := testStack(t)
	var ports Ports
	defer ports.Close()
	addr, _ := ports.Reserve()
	s.Ports = &ports
	// The server appears only after 700 ms: until then the check fails.
	s.Components = []Component{serving("web", addr, 700*time.Millisecond)}
	start := time.Now()
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatalf("after Up (%s): GET: %v, want the server answering", time.Since(start), err)
	}
	res.Body.Close()
	p, ok := s.Running("web")
	if !ok {
		t.Fatal("web: not running after Up")
	}
	b, _ := os.ReadFile(filepath.Join(s.Config.Dir, "web.url"))
	if got := strings.TrimSpace(string(b)); got != "http://"+addr+"/ready" {
		t.Errorf("web.url: got %q", got)
	}

	// Idempotent: a second Up leaves it alone.
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.Running("web"); q != p {
		t.Errorf("second Up: got process %+v, want the same %+v", q, p)
	}
	// Once it is killed, Up starts a new one.
	if _, err := s.Signal("web", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(context.Background(), p, 5*time.Second)
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q, ok := s.Running("web"); !ok || q == p {
		t.Errorf("Up after a kill: got %+v, %v, want a new process", q, ok)
	}
}

func TestUpReportsExitDuringStartup(t *testing.T) {
	s := testStack(t)
	addr := reserve(t)
	c := helperComponent("bad", "fail", "3")
	c.Listen = []string{addr}
	s.Components = []Component{c}
	err := s.Up(context.Background())
	if err == nil {
		t.Fatal("Up: got nil, want an error")
	}
	for _, want := range []string{"bad", "exited during start-up (status 3)", "boom: the helper cannot go on"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Up error: got %q, want it to contain %q", err, want)
		}
	}
	if _, ok := s.Running("bad"); ok {
		t.Error("bad: running after a failed start")
	}
}

func TestUpNotReadyInTime(t *testing.T) {
	s := testStack(t, "READY_TIMEOUT=1")
	addr := reserve(t)
	c := helperComponent("slow", "sleep") // never listens
	c.Listen = []string{addr}
	s.Components = []Component{c}
	err := s.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not ready after 1s") {
		t.Fatalf("Up: got %v, want not ready after 1s", err)
	}
	if rc, ok := s.ExitStatus("slow"); !ok || rc != 143 {
		t.Errorf("slow: exit status %d, %v; want 143 (stopped after the failed start)", rc, ok)
	}
}

// reserve returns a free loopback address (released at once).
func reserve(t *testing.T) string {
	t.Helper()
	var p Ports
	defer p.Close()
	a, err := p.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPorts(t *testing.T) {
	var p Ports
	defer p.Close()
	seen := map[string]bool{}
	for range 20 {
		a, err := p.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("Reserve: got %s twice", a)
		}
		seen[a] = true
		// Outside the ephemeral range, so no outgoing connection can take
		// it as its source port once it is released.
		_, port, _ := net.SplitHostPort(a)
		if n, _ := strconv.Atoi(port); n < lowestPort || n >= ephemeralLow() {
			t.Errorf("Reserve: got port %d, want within [%d, %d)", n, lowestPort, ephemeralLow())
		}
		// Reserved: nobody else can bind it.
		if ln, err := net.Listen("tcp", a); err == nil {
			ln.Close()
			t.Fatalf("%s: bound by another listener while reserved", a)
		}
	}
	var some string
	for a := range seen {
		some = a
		break
	}
	if !p.Release(some) || p.Release(some) {
		t.Errorf("Release(%s): want true once, then false", some)
	}
	ln, err := net.Listen("tcp", some)
	if err != nil {
		t.Fatalf("%s after Release: %v", some, err)
	}
	ln.Close()
	// nginx-style listen values name the same reservation.
	a, _ := p.Reserve()
	_, port, _ := net.SplitHostPort(a)
	if !p.Release(port + " reuseport") {
		t.Errorf("Release(%q): want the reservation of %s released", port+" reuseport", a)
	}
	// Hold reserves a released address again, until released.
	if err := p.Hold(a); err != nil {
		t.Fatalf("Hold(%s): %v", a, err)
	}
	if err := p.Hold(a); err != nil {
		t.Errorf("Hold(%s) twice: %v, want nil", a, err)
	}
	if ln, err := net.Listen("tcp", a); err == nil {
		ln.Close()
		t.Fatalf("%s: bound by another listener while held", a)
	}
	if !p.Release(a) {
		t.Errorf("Release(%s) after Hold: want true", a)
	}
	taken, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := p.Hold(a); err == nil {
		t.Errorf("Hold(%s) of a port another listener has: got nil, want an error", a)
	}
}

// TestUpReleasesReservedPorts: a component starts on a reserved address
// (released just before it starts) and its neighbour's stays reserved.
func TestUpReleasesReservedPorts(t *testing.T) {
	s := testStack(t)
	var ports Ports
	defer ports.Close()
	a, _ := ports.Reserve()
	other, _ := ports.Reserve()
	s.Ports = &ports
	s.Components = []Component{serving("web", a, 0)}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ports.Release(a) {
		t.Errorf("%s: still reserved after its component started", a)
	}
	if ln, err := net.Listen("tcp", other); err == nil {
		ln.Close()
		t.Errorf("%s: not reserved any more, want it held until its component starts", other)
	}
}

func TestUpRefusesPortInUse(t *testing.T) {
	s := testStack(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s.Components = []Component{serving("web", ln.Addr().String(), 0)}
	err = s.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Up: got %v, want already in use", err)
	}
	if _, err := os.Stat(filepath.Join(s.Config.Dir, "web.pid")); err == nil {
		t.Error("web.pid written although nothing started")
	}

	// A busy address of a later component is found before anything starts.
	s.Components = []Component{serving("first", reserve(t), 0), serving("web", ln.Addr().String(), 0)}
	s.Components[1].DependsOn = []string{"first"}
	err = s.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "web: "+ln.Addr().String()+" is already in use") {
		t.Fatalf("Up: got %v, want web's address already in use", err)
	}
	if _, ok := s.Running("first"); ok {
		t.Error("first started although web's address is busy")
	}

	// An address from the configuration: the error names its variable.
	s = testStack(t, "NGINX_LISTEN="+ln.Addr().String())
	s.Components = []Component{serving("nginx", ln.Addr().String(), 0)}
	err = s.Up(context.Background())
	if want := "set NGINX_LISTEN to another address"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Up: got %v, want %q", err, want)
	}
}

// TestUpWarnsOfDrift: an Up that finds a component running as another
// configuration would start it (environment, arguments, settings, a
// rebuilt program) leaves it running and says so, once per difference.
func TestUpWarnsOfDrift(t *testing.T) {
	s := testStack(t)
	var log bytes.Buffer
	s.Log = &log
	// The program is a copy of this test binary, so that it can be rebuilt.
	self, _ := os.Executable()
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := reserve(t)
	c := serving("web", addr, 0)
	c.Path, c.Env, c.Settings = prog, []string{"MODE=a"}, []string{"API_UPSTREAM=127.0.0.1:1", "RATE=10r/s", "API_RATE_LIMIT=on"}
	s.Components = []Component{c}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, _ := s.Running("web")

	log.Reset()
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "warning") {
		t.Errorf("Up of the same configuration: got %q, want no warning", log.String())
	}

	// Replace the program the way go build does: a new file under the name.
	if err := os.Remove(prog); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	d := c
	d.Env = []string{"MODE=b"}
	d.Args = append(slices.Clone(c.Args), "extra")
	d.Settings = []string{"API_UPSTREAM=127.0.0.1:1; server 127.0.0.1:2", "RATE=10r/s", "API_RATE_LIMIT=off"}
	s.Components = []Component{d}
	log.Reset()
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	// API_RATE_LIMIT is named by the variable the user gives: RATE_LIMIT
	// (the stack's configuration gives no API_RATE_LIMIT).
	for _, want := range []string{`another MODE than this configuration's "b"`, "other arguments", "another API_UPSTREAM",
		`another RATE_LIMIT (API_RATE_LIMIT) than this configuration's "off"`, "since rebuilt or replaced"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("Up of another configuration: got %q, want a warning with %q", log.String(), want)
		}
	}
	if strings.Contains(log.String(), "another RATE than") {
		t.Errorf("got %q, want no warning for the unchanged RATE", log.String())
	}
	if q, _ := s.Running("web"); q != p {
		t.Errorf("got process %+v, want the same %+v left running", q, p)
	}
}

func TestUpChecksProgramsFirst(t *testing.T) {
	s := testStack(t)
	s.Components = []Component{helperComponent("first", "sleep"),
		{Name: "second", Path: filepath.Join(t.TempDir(), "missing"), Hint: "make it"}}
	err := s.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "second") || !strings.Contains(err.Error(), "make it") {
		t.Fatalf("Up: got %v, want second's program missing with its hint", err)
	}
	if _, ok := s.Running("first"); ok {
		t.Error("first started although second's program is missing")
	}
}

// TestDownStopsOnlyItsOwnProcesses: pid files that name a process this
// stack did not start (a recycled pid: same pid, another start time; no
// identity at all) are removed and the process is not signalled.
func TestDownStopsOnlyItsOwnProcesses(t *testing.T) {
	s := testStack(t)
	s.Components = []Component{helperComponent("ours", "sleep")}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	ours, _ := s.Running("ours")

	foreign := exec.Command("sleep", "60")
	if err := foreign.Start(); err != nil {
		t.Fatal(err)
	}
	defer foreign.Process.Kill()
	fp, err := Identify(foreign.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// "recycled": the pid is right, the start time is not.
	recycled := record{Process: Process{PID: fp.PID, Start: fp.Start - 1}, Supervisor: Process{PID: fp.PID, Start: fp.Start - 1}}
	if err := writeRecord(s.Config.Dir, "recycled", recycled); err != nil {
		t.Fatal(err)
	}
	// "bare": a pid file with no identity (not written by a supervisor).
	os.WriteFile(filepath.Join(s.Config.Dir, "bare.pid"), []byte(strconv.Itoa(fp.PID)+"\n"), 0o644)

	if _, err := s.Signal("recycled", syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal(recycled): got %v, want ErrNotRunning", err)
	}
	if err := (Process{PID: fp.PID, Start: fp.Start + 1}).Signal(syscall.SIGKILL); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Process.Signal with another start time: got %v, want ErrNotRunning", err)
	}
	if err := s.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !fp.Alive() {
		t.Fatal("the foreign process was signalled")
	}
	if ours.Alive() {
		t.Error("ours: still running after Down")
	}
	for _, f := range []string{"recycled.pid", "recycled.proc", "bare.pid", "ours.pid"} {
		if _, err := os.Stat(filepath.Join(s.Config.Dir, f)); err == nil {
			t.Errorf("%s: still there after Down", f)
		}
	}
	if rc, ok := s.ExitStatus("ours"); !ok || rc != 143 {
		t.Errorf("ours: exit status %d, %v after Down; want 143 (recorded before Down returns)", rc, ok)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	s := testStack(t, "STOP_TIMEOUT=1")
	addr := reserve(t)
	c := helperComponent("stubborn", "ignore-term", addr)
	c.Listen = []string{addr} // listening: SIGTERM is ignored by then
	s.Components = []Component{c}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	if rc, ok := s.ExitStatus("stubborn"); !ok || rc != 137 {
		t.Errorf("exit status: got %d, %v, want 137", rc, ok)
	}
}

// TestProcessesOutliveTheStarter: a process that ran Up and exited leaves
// its components running, in sessions of their own, and Down from here
// stops them.
func TestProcessesOutliveTheStarter(t *testing.T) {
	s := testStack(t)
	self, _ := os.Executable()
	out, err := exec.Command(self, "helper", "up", s.Config.Dir, "kept").CombinedOutput()
	if err != nil {
		t.Fatalf("starter: %v\n%s", err, out)
	}
	p, ok := s.Running("kept")
	if !ok {
		t.Fatal("kept: not running after its starter exited")
	}
	if sid, mine := session(t, p.PID), session(t, os.Getpid()); sid == mine {
		t.Errorf("kept: session %d, want one of its own, not this process's", sid)
	}
	s.Components = []Component{helperComponent("kept", "sleep")}
	if err := s.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Error("kept: running after Down")
	}
}

// session is a process's session id (/proc/<pid>/stat field 6).
func session(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	sid, _ := strconv.Atoi(f[3])
	return sid
}

func TestStatus(t *testing.T) {
	s := testStack(t)
	addr := reserve(t)
	s.Components = []Component{serving("web", addr, 0), helperComponent("idle", "sleep")}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Stop(context.Background(), "idle")
	var b bytes.Buffer
	if err := s.Status(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	p, _ := s.Running("web")
	want := []string{
		"web            running  pid " + strconv.Itoa(p.PID),
		"idle           stopped  (last exit status 143)",
	}
	if len(lines) != len(want) {
		t.Fatalf("status: got %q, want %d lines", b.String(), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("status line %d: got %q, want it to start with %q", i, lines[i], want[i])
		}
	}
	if !strings.Contains(lines[0], "ready     http://"+addr+"/ready") {
		t.Errorf("status line 0: got %q, want ready and its URL", lines[0])
	}
}

func TestOrder(t *testing.T) {
	cs := []Component{{Name: "nginx", DependsOn: []string{"api"}}, {Name: "api", DependsOn: []string{"jaeger"}},
		{Name: "mailpit"}, {Name: "worker", DependsOn: []string{"mailpit", "absent"}}}
	got, err := order(cs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
	}
	if g, w := strings.Join(names, " "), "api nginx mailpit worker"; g != w {
		t.Errorf("order: got %s, want %s", g, w)
	}
	if _, err := order([]Component{{Name: "a", DependsOn: []string{"b"}}, {Name: "b", DependsOn: []string{"a"}}}); err == nil {
		t.Error("a cycle: got no error")
	}
	if _, err := order([]Component{{Name: "a"}, {Name: "a"}}); err == nil {
		t.Error("a name twice: got no error")
	}
}

// TestConcurrentUpStartsOnce: two `up` on one folder at once take turns;
// the second finds the component running.
func TestConcurrentUpStartsOnce(t *testing.T) {
	s := testStack(t)
	addr := reserve(t)
	s.Components = []Component{serving("web", addr, 300*time.Millisecond)}
	other := *s
	errs := make(chan error, 2)
	go func() { errs <- s.Up(context.Background()) }()
	go func() { errs <- other.Up(context.Background()) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(s.Config.Dir, "web.log"))
	if n := strings.Count(string(b), ": starting "); n != 1 {
		t.Errorf("web.log: %d starts, want 1\n%s", n, b)
	}
}
