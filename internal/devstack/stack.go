package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stack starts, watches and stops one native stack's processes, each under
// its own supervisor (Supervise), recording them in Config.Dir.
type Stack struct {
	Config Config
	// Components are what Up starts, in dependency order (New fills in
	// Config.Components; a caller may add its own before Up).
	Components []Component
	// Ports, when set, holds reservations of the components' listen
	// addresses; Up releases each just before starting its component.
	Ports *Ports
	// Log receives progress lines ("devstack: api ready ..."); nil
	// discards them.
	Log io.Writer
}

// New returns the stack of c with its standard components.
func New(c Config, log io.Writer) *Stack {
	return &Stack{Config: c, Components: c.Components(), Log: log}
}

func (s *Stack) logf(format string, a ...any) {
	if s.Log != nil {
		fmt.Fprintf(s.Log, "devstack: "+format+"\n", a...)
	}
}

// readyClient checks readiness: short, no proxy, no idle connections left
// behind.
var readyClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// Up starts every component that is not running, in order, each once what
// it depends on is ready, and waits until each is ready: its listen
// addresses accept connections and its ReadyURL answers 2xx. It is
// idempotent: a running component is left alone. Every program is checked
// before anything starts. A component that exits during start-up, or is
// not ready within READY_TIMEOUT, is stopped and reported with the tail of
// its log; what started before it keeps running (Down stops it).
func (s *Stack) Up(ctx context.Context) error {
	cs, err := order(s.Components)
	if err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	path := getenv(s.Config.Environ, "PATH")
	var missing []error
	for _, c := range cs {
		if c.Skip != "" || s.running(c.Name) {
			continue
		}
		if c.Path == "" || resolve(c.Path, path) == "" {
			what := c.Path
			if what == "" {
				what = "its program"
			}
			missing = append(missing, fmt.Errorf("%s: %s is missing (%s)", c.Name, what, c.Hint))
		}
	}
	// Every address must be free before anything starts: a busy port found
	// halfway would leave half a stack running.
	for _, c := range cs {
		if c.Skip != "" || s.running(c.Name) {
			continue
		}
		s.awaitReaped(c.Name)
		for _, a := range c.Listen {
			if !portZero(a) && !(s.Ports != nil && s.Ports.Held(a)) && accepting(a) {
				missing = append(missing, s.busy(c, a))
			}
		}
	}
	if _, err := os.Stat(s.Config.Supervisor); err != nil {
		missing = append(missing, fmt.Errorf("the supervisor %s is missing (make build)", s.Config.Supervisor))
	}
	if len(missing) > 0 {
		return errors.Join(missing...)
	}
	for _, c := range cs {
		if c.Skip != "" {
			s.logf("%s: not started: %s", c.Name, c.Skip)
			continue
		}
		if r, err := s.readRecord(c.Name); err == nil && r.Process.Alive() {
			s.logf("%s already running (pid %d)", c.Name, r.Process.PID)
			s.checkDrift(c, r)
			continue
		} else if err == nil || !os.IsNotExist(err) {
			s.logf("%s: removing a stale pid file (%s)", c.Name, s.staleReason(c.Name, r, err))
			s.removeFiles(c.Name)
		}
		if err := s.start(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// awaitReaped waits, at most STOP_TIMEOUT, until a component's last
// process, no longer alive, has been reaped by its supervisor (which then
// writes <name>.exit). A killed multi-threaded process shows as a zombie
// as soon as its main thread has exited, while its other threads may still
// be closing the files they share, its listening sockets among them: until
// the reap its ports can still accept.
func (s *Stack) awaitReaped(name string) {
	r, err := s.readRecord(name)
	if err != nil || r.Process.Alive() {
		return
	}
	deadline := time.Now().Add(s.Config.StopTimeout)
	for r.Supervisor.Alive() && time.Now().Before(deadline) {
		if _, ok := s.ExitStatus(name); ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// staleReason says why a pid file names no running process of ours.
func (s *Stack) staleReason(name string, r record, err error) string {
	switch rc, ok := s.ExitStatus(name); {
	case err != nil:
		return err.Error()
	case ok:
		return fmt.Sprintf("pid %d ended with status %d", r.Process.PID, rc)
	}
	return fmt.Sprintf("pid %d has ended, or is another process now", r.Process.PID)
}

// checkDrift warns when a running component is not what this
// configuration would start: other values of its own variables (a plain
// `up` before an `up` with OBS=1), other arguments, other settings (nginx
// rendered for another API_INSTANCES or RATE_LIMIT; a setting is named by
// the variable the user gives, Config.SettingVars), or a program rebuilt
// since it started (/proc/<pid>/exe then ends in " (deleted)", see
// proc_pid_exe(5)). Up leaves it running: restarting the caller's stack
// behind its back is down's job.
func (s *Stack) checkDrift(c Component, r record) {
	p := r.Process
	warn := func(what string) {
		s.logf("warning: %s (pid %d) runs with %s; run down, then up, to apply it", c.Name, p.PID, what)
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/environ"); err == nil {
		have := strings.Split(string(b), "\x00")
		for _, kv := range c.Env {
			k, v, _ := strings.Cut(kv, "=")
			if getenv(have, k) != v {
				warn(fmt.Sprintf("another %s than this configuration's %q", k, v))
			}
		}
	}
	if want := append([]string{c.Path}, c.Args...); !slices.Equal(r.Command, want) {
		warn(fmt.Sprintf("other arguments than this configuration's %q", want))
	}
	if b, err := os.ReadFile(s.file(c.Name, extSettings)); err == nil {
		have := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		for _, kv := range c.Settings {
			k, v, _ := strings.Cut(kv, "=")
			if getenv(have, k) != v {
				name := k
				if given := s.Config.SettingVars[k]; given != "" {
					name = given + " (" + k + ")"
				}
				warn(fmt.Sprintf("another %s than this configuration's %q", name, v))
			}
		}
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/exe"); err == nil && strings.HasSuffix(exe, " (deleted)") {
		warn(fmt.Sprintf("a program since rebuilt or replaced (%s)", exe))
	}
}

// busy is the error for c's listen address a, found in use by a process
// this stack did not start: it names the variable that moves a, when the
// configuration has one.
func (s *Stack) busy(c Component, a string) error {
	how := "choose another address"
	if v := s.Config.ListenVars[a]; v != "" {
		how = "set " + v + " to another address (make dev " + v + "=…)"
	}
	return fmt.Errorf("%s: %s is already in use by another process (not one this DEV_DIR started); free it or %s", c.Name, DialAddr(a), how)
}

// start prepares, launches and waits for one component.
func (s *Stack) start(ctx context.Context, c Component) error {
	if c.Prepare != nil {
		if err := c.Prepare(ctx, s.logf); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	for _, a := range c.Listen {
		if s.Ports != nil {
			s.Ports.Release(a)
		}
		if !portZero(a) && accepting(a) {
			return s.busy(c, a)
		}
	}
	for _, ext := range []string{extPID, extProc, extURL, extExit} {
		os.Remove(s.file(c.Name, ext))
	}
	if err := writeFileAtomic(s.file(c.Name, extSettings), []byte(strings.Join(c.Settings, "\n")+"\n")); err != nil {
		return err
	}
	logPath := s.file(c.Name, extLog)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== %s: starting %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(append([]string{c.Path}, c.Args...), " "))
	cmd := exec.Command(s.Config.Supervisor, append([]string{SuperviseCommand, s.Config.Dir, c.Name, "--", c.Path}, c.Args...)...)
	cmd.Env = setEnv(s.Config.Environ, c.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	// A session of its own: it outlives this process and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	log.Close()
	if err != nil {
		return fmt.Errorf("%s: start its supervisor: %w", c.Name, err)
	}
	// Reap the supervisor if it ends while this process runs (a test's);
	// after `devstack up` returns, init does.
	ended := make(chan struct{})
	go func() { cmd.Wait(); close(ended) }()

	var p Process
	for {
		if r, err := s.readRecord(c.Name); err == nil {
			p = r.Process
			break
		}
		select {
		case <-ended:
			return fmt.Errorf("%s did not start%s", c.Name, tail(logPath, 40))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	if c.ReadyURL != "" {
		if err := writeFileAtomic(s.file(c.Name, extURL), []byte(c.ReadyURL+"\n")); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.Config.ReadyTimeout)
	for {
		if !p.Alive() {
			status := "unknown status"
			if s.waitExit(c.Name, time.Second) {
				rc, _ := readExit(s.file(c.Name, extExit))
				status = "status " + strconv.Itoa(rc)
			}
			s.removeFiles(c.Name)
			return fmt.Errorf("%s (pid %d) exited during start-up (%s)%s", c.Name, p.PID, status, tail(logPath, 40))
		}
		if s.ready(ctx, c) {
			s.logf("%s ready (pid %d%s)", c.Name, p.PID, strings.TrimSuffix(", "+c.ReadyURL, ", "))
			return nil
		}
		if err := ctx.Err(); err != nil {
			s.Stop(context.Background(), c.Name)
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if time.Now().After(deadline) {
			s.Stop(context.Background(), c.Name)
			return fmt.Errorf("%s (pid %d) not ready after %s (%s)%s", c.Name, p.PID, s.Config.ReadyTimeout,
				strings.Join(slices.DeleteFunc(append(slices.Clone(c.Listen), c.ReadyURL), func(s string) bool { return s == "" }), " "),
				tail(logPath, 40))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lock takes the folder's lock (flock on DEV_DIR/devstack.lock), so that
// two `up` or `down` on one folder run one after the other; it waits for
// the other to finish, or for ctx.
func (s *Stack) lock(ctx context.Context) (unlock func(), err error) {
	if err := os.MkdirAll(s.Config.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.Config.Dir, "devstack.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !waited {
			s.logf("waiting for another up or down on %s", s.Config.Dir)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ready reports whether every listen address accepts connections and the
// ReadyURL answers 2xx.
func (s *Stack) ready(ctx context.Context, c Component) bool {
	for _, a := range c.Listen {
		if !portZero(a) && !accepting(a) {
			return false
		}
	}
	return c.ReadyURL == "" || answers(ctx, c.ReadyURL)
}

// answers reports whether a GET of url answers 2xx.
func answers(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := readyClient.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	return res.StatusCode >= 200 && res.StatusCode < 300
}

// waitExit waits up to timeout for <name>.exit, and reports whether it is
// there.
func (s *Stack) waitExit(name string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(s.file(name, extExit)); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Down stops every component this stack's folder records, in the reverse
// of the start order (components an earlier `up` started with more
// instances, or with OBS=1, included), each only if its pid still names the
// process that was started (Process). It returns the errors of the
// components that could not be stopped.
func (s *Stack) Down(ctx context.Context) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	names := s.names()
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		if err := s.Stop(ctx, names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop stops the named components together: SIGTERM to each that runs,
// then up to STOP_TIMEOUT for them to exit, then SIGKILL. It returns once
// each has ended and its exit status is recorded. A pid file whose process
// is gone, or whose pid now names another process, is removed and nothing
// is signalled.
func (s *Stack) Stop(ctx context.Context, names ...string) error {
	type stopping struct {
		name string
		rec  record
	}
	var live []stopping
	for _, name := range names {
		r, err := s.readRecord(name)
		switch {
		case os.IsNotExist(err):
			continue
		case err != nil:
			s.logf("%s: %v; removing the pid file, signalling nothing", name, err)
			s.removeFiles(name)
			continue
		}
		if err := r.Process.Signal(syscall.SIGTERM); err != nil {
			if !errors.Is(err, ErrNotRunning) {
				return fmt.Errorf("stop %s: %w", name, err)
			}
			s.removeFiles(name)
			continue
		}
		s.logf("stopping %s (pid %d)", name, r.Process.PID)
		live = append(live, stopping{name, r})
	}
	var errs []error
	deadline := time.Now().Add(s.Config.StopTimeout)
	for _, l := range live {
		if !waitGone(ctx, l.rec.Process, time.Until(deadline)) {
			s.logf("%s (pid %d) still running after %s; sending SIGKILL", l.name, l.rec.Process.PID, s.Config.StopTimeout)
			l.rec.Process.Signal(syscall.SIGKILL)
			if !waitGone(ctx, l.rec.Process, 5*time.Second) {
				errs = append(errs, fmt.Errorf("%s (pid %d) did not end after SIGKILL", l.name, l.rec.Process.PID))
				continue
			}
		}
		// Its supervisor writes the exit status, then ends.
		waitGone(ctx, l.rec.Supervisor, 5*time.Second)
		s.removeFiles(l.name)
	}
	return errors.Join(errs...)
}

// waitGone polls until p has ended, timeout passes or ctx ends, and
// reports whether p ended.
func waitGone(ctx context.Context, p Process, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for p.Alive() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Running returns a component's process if it runs (and is the process
// that was started).
func (s *Stack) Running(name string) (Process, bool) {
	r, err := s.readRecord(name)
	if err != nil || !r.Process.Alive() {
		return Process{}, false
	}
	return r.Process, true
}

func (s *Stack) running(name string) bool {
	_, ok := s.Running(name)
	return ok
}

// Signal sends sig to a running component and returns its process; an
// error wrapping ErrNotRunning when it does not run.
func (s *Stack) Signal(name string, sig syscall.Signal) (Process, error) {
	r, err := s.readRecord(name)
	if err != nil {
		return Process{}, fmt.Errorf("%s: %w (%v)", name, ErrNotRunning, err)
	}
	if err := r.Process.Signal(sig); err != nil {
		return Process{}, fmt.Errorf("%s: %w", name, err)
	}
	return r.Process, nil
}

// ExitStatus is the exit status recorded when a component's last process
// ended (its code, or 128+N after signal N), and whether there is one.
func (s *Stack) ExitStatus(name string) (int, bool) {
	rc, err := readExit(s.file(name, extExit))
	return rc, err == nil
}

// Instances returns the running components of one kind (api: api, api-2,
// ...) by name.
func (s *Stack) Instances(kind string) map[string]Process {
	out := map[string]Process{}
	for _, name := range s.names() {
		if name == kind || kindOf(name) == kind {
			if p, ok := s.Running(name); ok {
				out[name] = p
			}
		}
	}
	return out
}

// kindOf is api for api-2: the name less a numeric -N suffix.
func kindOf(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// names lists, in start order, every component this stack could have
// started: the configured ones, those of OBS=1 and SKIP_MAILPIT=0, and
// any other with a pid file in the folder (an instance beyond today's
// count, placed after the last of its kind).
func (s *Stack) names() []string {
	all := s.Config.components(true)
	known := map[string]bool{}
	for _, c := range all {
		known[c.Name] = true
	}
	for _, c := range s.Components {
		if !known[c.Name] {
			all = append(all, c)
			known[c.Name] = true
		}
	}
	ordered, err := order(all)
	if err != nil {
		ordered = all
	}
	var names []string
	for _, c := range ordered {
		names = append(names, c.Name)
	}
	files, _ := filepath.Glob(filepath.Join(s.Config.Dir, "*"+extPID))
	var extra []string
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), extPID); !known[name] {
			extra = append(extra, name)
		}
	}
	slices.SortFunc(extra, func(a, b string) int {
		return strings.Compare(kindOf(a), kindOf(b))*1000 + instanceNumber(a) - instanceNumber(b)
	})
	for _, name := range extra {
		at := -1
		for i, n := range names {
			if n == kindOf(name) || kindOf(n) == kindOf(name) {
				at = i
			}
		}
		if at < 0 {
			names = append(names, name) // stopped first
		} else {
			names = slices.Insert(names, at+1, name)
		}
	}
	return names
}

func instanceNumber(name string) int {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil {
			return n
		}
	}
	return 1
}

// Status writes one line per component: running with its pid and whether
// its ReadyURL answers, or stopped (with the last exit status). A
// component that is not configured (OBS=1's without OBS=1) is listed only
// when it has a pid file.
func (s *Stack) Status(ctx context.Context, w io.Writer) error {
	configured := map[string]bool{}
	for _, c := range s.Components {
		configured[c.Name] = c.Skip == ""
	}
	var names []string
	width := 14 // the names' column, wider for a longer name
	for _, name := range s.names() {
		if _, err := os.Stat(s.file(name, extPID)); !configured[name] && err != nil {
			continue
		}
		names = append(names, name)
		width = max(width, len(name))
	}
	for _, name := range names {
		if p, ok := s.Running(name); ok {
			url := ""
			if b, err := os.ReadFile(s.file(name, extURL)); err == nil {
				url = strings.TrimSpace(string(b))
			}
			state := "unknown"
			if url != "" {
				state = "not-ready"
				if answers(ctx, url) {
					state = "ready"
				}
			}
			fmt.Fprintf(w, "%-*s running  pid %-7d %-9s %s\n", width, name, p.PID, state, url)
			continue
		}
		line := fmt.Sprintf("%-*s stopped", width, name)
		if rc, ok := s.ExitStatus(name); ok {
			line += fmt.Sprintf("  (last exit status %d)", rc)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// getenv is the value of name in environ ("" when unset).
func getenv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// resolve returns the executable that path names: itself when it has a
// slash, else the first in the PATH folders given; "" when there is none.
func resolve(path, pathList string) string {
	if strings.Contains(path, "/") {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path
		}
		return ""
	}
	return findProgram(pathList, path)
}
