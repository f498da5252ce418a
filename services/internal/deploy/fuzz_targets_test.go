package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every fuzz function in the repository is one of the Makefile's
// FUZZ_TARGETS (`make fuzz` runs each), and every target names a fuzz
// function of its package: a fuzz test left out of the list is never
// fuzzed, only run on its seeds.
func TestFuzzTargetsListEveryFuzzFunction(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FUZZ_TARGETS\s*:?=(.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Makefile: no FUZZ_TARGETS")
	}
	listed := strings.Fields(string(m[1]))
	slices.Sort(listed)

	var found []string
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && isFuzzFunc(fn) {
				found = append(found, fn.Name.Name+":./"+filepath.ToSlash(rel))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	if len(found) == 0 {
		t.Fatal("found no fuzz function in the repository")
	}
	if !slices.Equal(listed, found) {
		t.Errorf("FUZZ_TARGETS: got %v, want %v (every func FuzzXxx(*testing.F), as Name:./package)", listed, found)
	}
}

// isFuzzFunc reports whether fn is a fuzz test: FuzzXxx(f *testing.F).
func isFuzzFunc(fn *ast.FuncDecl) bool {
	if !strings.HasPrefix(fn.Name.Name, "Fuzz") || len(fn.Type.Params.List) != 1 {
		return false
	}
	star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "testing" && sel.Sel.Name == "F"
}
