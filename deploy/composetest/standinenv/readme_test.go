package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeSection: the README's "`make up` with no registry" gives the
// knob's commands, names the project standinenv prints and the override file
// make adds (which exists), and says what is left out.
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
}
