package devstack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The files of one component in the stack's folder (DEV_DIR), by name:
//
//	<name>.log   its stdout and stderr, appended to by every start
//	<name>.pid   its pid, the process to signal (one line)
//	<name>.proc  its identity and its supervisor's (JSON: record)
//	<name>.url   the URL that answers once it is ready
//	<name>.exit  its exit status once it has ended: the code, or 128+N
//	             after signal N (as a shell's $?)
//	<name>.settings  the Component.Settings it was started with, a line each
const (
	extLog  = ".log"
	extPID  = ".pid"
	extProc = ".proc"
	extURL  = ".url"
	extExit = ".exit"

	extSettings = ".settings"
)

// record is the content of <name>.proc.
type record struct {
	Process    Process  `json:"process"`
	Supervisor Process  `json:"supervisor"`
	Command    []string `json:"command"`
}

func (s *Stack) file(name, ext string) string { return filepath.Join(s.Config.Dir, name+ext) }

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader sees the old content or the new one, never a part.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeRecord writes <name>.proc, then <name>.pid: whoever finds the pid
// file finds the identity too.
func writeRecord(dir, name string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, name+extProc), append(b, '\n')); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name+extPID), []byte(strconv.Itoa(r.Process.PID)+"\n"))
}

// readRecord reads a component's pid file and identity. A pid file whose
// identity is missing or names another pid is an error: nothing proves
// which process it meant.
func (s *Stack) readRecord(name string) (record, error) {
	b, err := os.ReadFile(s.file(name, extPID))
	if err != nil {
		return record{}, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", s.file(name, extPID), err)
	}
	var r record
	b, err = os.ReadFile(s.file(name, extProc))
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return record{}, fmt.Errorf("pid %d in %s has no identity (%v); it was not started by this launcher", pid, s.file(name, extPID), err)
	}
	if r.Process.PID != pid {
		return record{}, fmt.Errorf("%s says pid %d, %s says %d", s.file(name, extPID), pid, s.file(name, extProc), r.Process.PID)
	}
	return r, nil
}

// readExit reads <name>.exit.
func readExit(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	rc, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return rc, nil
}

// removeFiles removes a component's pid, identity and URL files (its log
// and exit status stay).
func (s *Stack) removeFiles(name string) {
	for _, ext := range []string{extPID, extProc, extURL, extSettings} {
		os.Remove(s.file(name, ext))
	}
}

// tail returns the last n lines of a file, indented, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}
