package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// binary is one program the stack runs, as copied for this run.
type binary struct {
	Built  string `json:"built"` // the source file's modification time
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// copyBinaries copies bin/<name> into dir, so that every mode of the run
// uses the same build even when bin/ is rebuilt meanwhile (make build,
// make test), and describes each copy.
func copyBinaries(repo, dir string, names []string) (map[string]binary, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]binary{}
	for _, name := range names {
		b, err := copyBinary(filepath.Join(repo, "bin", name), filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("copy bin/%s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}

func copyBinary(src, dst string) (binary, error) {
	in, err := os.Open(src)
	if err != nil {
		return binary{}, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return binary{}, err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return binary{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return binary{}, err
	}
	return binary{Built: st.ModTime().UTC().Format(time.RFC3339), Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
