package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process identifies one process for as long as it lives: its pid and its
// start time in clock ticks since boot (field 22 of /proc/<pid>/stat, see
// proc_pid_stat(5)). A pid is reused once its process is gone, but the
// process that gets it starts later, so (PID, Start) never names two
// processes: a stale pid file is never taken for the process it once named.
type Process struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // clock ticks after boot
}

// ErrNotRunning is returned (wrapped) when a process is gone, is a
// zombie, or its pid now belongs to another process.
var ErrNotRunning = errors.New("not running")

// procStat is what /proc/<pid>/stat says of a process.
type procStat struct {
	state byte   // R, S, D, Z, T, ...
	start uint64 // field 22, starttime
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat starttime: %w", pid, err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

// Identify returns the identity of the process that has pid now.
func Identify(pid int) (Process, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return Process{}, fmt.Errorf("pid %d: %w (%v)", pid, ErrNotRunning, err)
	}
	return Process{PID: pid, Start: st.start}, nil
}

// Alive reports whether p still runs: its pid exists, has p's start time
// and is not a zombie (exited, not yet reaped by its parent).
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, err := readProcStat(p.PID)
	return err == nil && st.start == p.Start && st.state != 'Z' && st.state != 'X'
}

// Signal sends sig to p if, and only if, p is still the same process. The
// process is pinned first (os.FindProcess holds a pidfd on Linux 5.3+, so
// the signal goes to the process the pid named then), and its identity is
// checked after, so a pid recycled at any moment is never signalled.
func (p Process) Signal(sig syscall.Signal) error {
	if p.PID <= 0 {
		return fmt.Errorf("pid %d: %w", p.PID, ErrNotRunning)
	}
	h, err := os.FindProcess(p.PID)
	if err != nil {
		return fmt.Errorf("pid %d: %w (%v)", p.PID, ErrNotRunning, err)
	}
	defer h.Release()
	if !p.Alive() {
		return fmt.Errorf("pid %d: %w", p.PID, ErrNotRunning)
	}
	if err := h.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("pid %d: %w", p.PID, ErrNotRunning)
		}
		return fmt.Errorf("signal %d to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

// StartTime is when p started on the wall clock: its start ticks after
// boot (10 ms resolution, rounded down: USER_HZ is 100 on Linux) are
// counted back from the boot clock (CLOCK_BOOTTIME, the clock the kernel
// stamps a process's start with) and the wall clock read together now.
// Not from /proc/stat's btime: that is the boot's wall time truncated to
// the second, which put every start up to a second early (0.29 s on the
// machine where it was found: a fifteenth of the bench's 4.4 s drains,
// which are timed from the worker's start).
func (p Process) StartTime() (time.Time, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, fmt.Errorf("boot clock: %w", err)
	}
	now := time.Now()
	const tick = time.Second / 100 // USER_HZ
	return now.Add(-(time.Duration(ts.Nano()) - time.Duration(p.Start)*tick)), nil
}
