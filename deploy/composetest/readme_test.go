package composetest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOfflineRecipeNamesEveryStandin: the README's recipe for `make up`
// with no registry gives each stand-in's image variable its image
// (Var=$(std Name)), names no other, and applies the override file the
// test uses.
func TestOfflineRecipeNamesEveryStandin(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### `make up` with no registry\n")
	if !ok {
		t.Fatal("README: no section \"`make up` with no registry\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")

	var want []string
	for _, s := range Standins {
		want = append(want, s.Var+"=$(std "+s.Name+")")
	}
	got := regexp.MustCompile(`[A-Z_]+_IMAGE=\$\(std [a-z-]+\)`).FindAllString(section, -1)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("README recipe's image variables:\ngot  %v\nwant %v (Standins)", got, want)
	}
	const override = "deploy/composetest/compose.test-override.yml"
	if _, err := os.Stat(filepath.Join(root, override)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(section, "-f docker-compose.yml -f docker-compose.observability.yml -f "+override); n != 2 {
		t.Errorf("README recipe: got %d make commands with the three compose files, want 2 (up and down)", n)
	}
}
