package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeReportPaths: make test-kubernetes, chaos and soak hand go test
// their report files (CHAOS_REPORT, KUBERNETES_REPORT) as absolute paths,
// since the tests run in their packages' folders: the default, relative to
// the repository, under it; one given as an absolute path, as it is
// ($(CURDIR)/$(CHAOS_REPORT) made <repo>//tmp/...). make test passes them
// the same way; it is left out because `make -n test` runs the lines that
// call $(MAKE) (fuzz and test-compose, whose go test is on that line).
// `make -n`: the commands are printed, not run.
func TestMakeReportPaths(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	root := repoRoot(t)
	defaults := map[string]string{
		"CHAOS_REPORT":      filepath.Join(root, "artifacts", "chaos-report.txt"),
		"KUBERNETES_REPORT": filepath.Join(root, "artifacts", "kubernetes-report.txt"),
	}
	for _, tc := range []struct {
		target string
		vars   []string // the report variables it passes
	}{
		{"test-kubernetes", []string{"KUBERNETES_REPORT"}},
		{"chaos", []string{"CHAOS_REPORT"}},
		{"soak", []string{"CHAOS_REPORT"}},
	} {
		for _, given := range []bool{false, true} {
			args := []string{"-n", tc.target, "BIN_DIR=" + filepath.Join(dir, "bin")}
			want := map[string]string{}
			for _, v := range tc.vars {
				want[v] = defaults[v]
				if given {
					want[v] = filepath.Join(dir, strings.ToLower(v)+".txt")
					args = append(args, v+"="+want[v])
				}
			}
			out, err := makeIn(t, env, args...)
			if err != nil {
				t.Fatalf("make %v: %v: %s", args, err, out)
			}
			for _, v := range tc.vars {
				if !strings.Contains(out, " "+v+"="+want[v]+" ") {
					t.Errorf("make %v: got %q, want %s=%s passed to go test", args, out, v, want[v])
				}
			}
		}
	}
}
