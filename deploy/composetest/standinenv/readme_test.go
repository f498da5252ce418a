package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeSection: the README's "`make up` with no registry" gives the
// knob's commands, with the base alone built as root before make up runs
// as the user (the command and flag are run's), names the project
// standinenv prints and the override file make adds (which exists), and
// says what is left out.
func TestReadmeSection(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### `make up` with no registry\n")
	if !ok {
		t.Fatal("README: no section \"`make up` with no registry\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	const override = "deploy/composetest/compose.test-override.yml"
	if _, err := os.Stat(filepath.Join(root, override)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make up STANDINS=1", "make down STANDINS=1", "make logs STANDINS=1",
		"COMPOSE_PROJECT_NAME=" + Project, "-p " + Project, override, "no Grafana", "no nginx span"} {
		if !strings.Contains(section, want) {
			t.Errorf("README section \"`make up` with no registry\": got no %q", want)
		}
	}
	// The commands in order: bin/standinenv built as the user, the base
	// as root, make up as the user (not under sudo).
	steps := []string{"\nmake standinenv ", "\nsudo bin/standinenv -base ", "\nmake up STANDINS=1 "}
	at := 0
	for _, step := range steps {
		i := strings.Index(section[at:], step)
		if i < 0 {
			t.Fatalf("README section \"`make up` with no registry\": got no %q where expected, want the steps %q in order", step, steps)
		}
		at += i + len(step)
	}
	if strings.Contains(section, "\nsudo make") {
		t.Errorf("README section \"`make up` with no registry\": got a make command under sudo, want only the base as root")
	}
	// The flag the README gives is standinenv's (make standinenv builds
	// bin/standinenv: TestMakeStandinsCommands).
	var stdout, log strings.Builder
	if err := run(context.Background(), []string{"standinenv", "-base"}, func(string) string { return "" }, 1000, &stdout, &log); err == nil ||
		strings.Contains(err.Error(), "not defined") {
		t.Errorf("standinenv -base as a user: got %v, want its refusal", err)
	}
}
