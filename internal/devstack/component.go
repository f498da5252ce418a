package devstack

import (
	"context"
	"fmt"
	"slices"
)

// Component is one process of the stack, described as data: adding a
// component to the stack is adding one of these (see Config.Components).
type Component struct {
	// Name names its files in the stack's folder (<Name>.log, .pid, ...);
	// instances of one program are api, api-2, api-3, ...
	Name string
	// Path and Args are the program and its arguments. A Path without a
	// slash is looked up in the environment's PATH.
	Path string
	Args []string
	// Env is added to the stack's environment (Config.Environ), each
	// "NAME=value" replacing the stack's value of NAME.
	Env []string
	// Settings are "NAME=value" lines that decide how the process runs
	// beyond Env and Args (nginx: the values its templates are rendered
	// with). They are written to <Name>.settings at each start, and an Up
	// that finds the process running with other settings warns.
	Settings []string
	// Listen are the addresses the process binds. Before it starts each
	// must be free (a reservation in Stack.Ports is released just then);
	// it is ready only once each accepts connections. An address with port
	// 0 is neither checked nor awaited.
	Listen []string
	// ReadyURL, when set, must answer 2xx for the process to be ready; it
	// is written to <Name>.url and shown by Status.
	ReadyURL string
	// DependsOn names the components that start (and are ready) before
	// this one and stop after it.
	DependsOn []string
	// Prepare, when set, runs before each start (not when the component is
	// already running): it renders configuration, creates folders.
	Prepare func(ctx context.Context, logf Logf) error
	// Hint says how to get Path when it is missing ("make build").
	Hint string
	// Skip, when set, is why the component is not started this time (a
	// missing optional program); Up logs it.
	Skip string
}

// Logf writes one progress line.
type Logf func(format string, args ...any)

// order returns components so that each comes after everything it depends
// on, keeping the given order otherwise. A dependency that is not in the
// list is ignored (an optional component left out); a cycle is an error.
func order(cs []Component) ([]Component, error) {
	index := map[string]int{}
	for i, c := range cs {
		if _, dup := index[c.Name]; dup {
			return nil, fmt.Errorf("component %q is listed twice", c.Name)
		}
		index[c.Name] = i
	}
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]int, len(cs))
	out := make([]Component, 0, len(cs))
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("components depend on each other: %v", append(path, cs[i].Name))
		}
		state[i] = visiting
		for _, d := range cs[i].DependsOn {
			if j, ok := index[d]; ok {
				if err := visit(j, append(slices.Clip(path), cs[i].Name)); err != nil {
					return err
				}
			}
		}
		state[i] = done
		out = append(out, cs[i])
		return nil
	}
	for i := range cs {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
