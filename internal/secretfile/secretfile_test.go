package secretfile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Read drops only the trailing line ends, and fails, naming the file, on
// one that holds no password or cannot be read.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		content, want string
		wantErr       bool
	}{
		{"pw\r\n", "pw", false},
		{"p\nw\n\n", "p\nw", false},
		{" pw \n", " pw ", false},
		{"", "", true},
		{"\n", "", true},
		{"\r\n\r\n", "", true},
	} {
		path := filepath.Join(dir, strconv.Quote(c.content))
		if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read(path)
		if got != c.want || (err != nil) != c.wantErr ||
			(c.wantErr && !strings.Contains(err.Error(), path+" is empty")) {
			t.Errorf("file %q: got %q, %v; want %q, error %v (naming the file)", c.content, got, err, c.want, c.wantErr)
		}
	}
	missing := filepath.Join(dir, "missing")
	if got, err := Read(missing); got != "" || err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: got %q, %v; want an error naming %s", got, err, missing)
	}
}
