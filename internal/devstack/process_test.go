package devstack

import (
	"os/exec"
	"testing"
	"time"
)

// StartTime is the process's start on the wall clock, within the 10 ms of
// its start ticks: between just before it was started and just after.
// From /proc/stat's btime (the boot's wall time truncated to the second)
// it came out up to a second early.
func TestStartTimeIsWhenTheProcessStarted(t *testing.T) {
	for range 3 {
		before := time.Now()
		cmd := exec.Command("sleep", "5")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		p, err := Identify(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.StartTime()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		// Ticks are rounded down to 10 ms. StartTime reads the boot clock,
		// then the wall clock: time between the two reads (a preemption on
		// a loaded machine: milliseconds) can only put it later, so the
		// late side has room for it; the early side, where btime's error
		// lay, has none.
		const tick = 10 * time.Millisecond
		const preempted = 100 * time.Millisecond
		if got.Before(before.Add(-tick-time.Millisecond)) || got.After(after.Add(preempted)) {
			t.Errorf("StartTime: got %s, want between %s and %s (the process was started then)",
				got.Format(time.RFC3339Nano), before.Add(-tick).Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
		}
	}
}
