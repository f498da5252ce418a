package devstack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// SuperviseCommand is the first argument that makes the devstack binary a
// supervisor (`devstack supervise DIR NAME -- PROGRAM [ARG...]`); see
// Supervise.
const SuperviseCommand = "supervise"

// forwarded are the signals a supervisor passes on to its component, so
// that signalling the supervisor is signalling the component.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// Supervise runs one component and outlives the command that started it:
// args are DIR NAME -- PROGRAM [ARG...]. It starts PROGRAM (looked up in
// PATH when it has no slash) in its own process group with this process's
// environment, stdout and stderr (the component's log) and no stdin; writes
// DIR/NAME.proc and DIR/NAME.pid; passes SIGTERM, SIGINT, SIGQUIT, SIGHUP,
// SIGUSR1 and SIGUSR2 on to it; waits for it; and writes its exit status to
// DIR/NAME.exit: its exit code, or 128+N when signal N ended it. A program
// that cannot be started is recorded as 127 (not found) or 126 (found but
// not executable), as a shell would.
//
// Stack.Up runs it as a new session (setsid), so neither the end of `make
// dev` nor a terminal's hang-up reaches it.
func Supervise(args []string) error {
	if len(args) < 4 || args[2] != "--" {
		return errors.New("usage: devstack supervise DIR NAME -- PROGRAM [ARG...]")
	}
	dir, name, argv := args[0], args[1], args[3:]
	exitFile := filepath.Join(dir, name+extExit)
	self, err := Identify(os.Getpid())
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		rc := 127
		if errors.Is(err, os.ErrPermission) {
			rc = 126
		}
		fmt.Fprintf(os.Stderr, "=== %s: %s: %v\n", time.Now().UTC().Format(time.RFC3339), name, err)
		return errors.Join(err, writeFileAtomic(exitFile, []byte(strconv.Itoa(rc)+"\n")))
	}
	child, err := Identify(cmd.Process.Pid)
	if err == nil {
		err = writeRecord(dir, name, record{Process: child, Supervisor: self, Command: argv})
	}
	if err != nil {
		// Without its pid file nobody could stop it.
		cmd.Process.Kill()
		cmd.Wait()
		return errors.Join(err, writeFileAtomic(exitFile, []byte("137\n")))
	}
	go func() {
		for sig := range sigs {
			cmd.Process.Signal(sig)
		}
	}()
	cmd.Wait()
	signal.Stop(sigs)
	rc := exitStatus(cmd.ProcessState)
	fmt.Fprintf(os.Stderr, "=== %s: %s (pid %d) exited with status %d\n", time.Now().UTC().Format(time.RFC3339), name, child.PID, rc)
	return writeFileAtomic(exitFile, []byte(strconv.Itoa(rc)+"\n"))
}

// exitStatus is a shell's $? for an ended process: its exit code, or
// 128+N when signal N ended it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
