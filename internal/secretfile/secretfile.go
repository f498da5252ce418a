// Package secretfile reads a password from a file, the convention of
// compose and Kubernetes secrets (NAME_FILE beside NAME), for the services
// (services/internal/config) and the native stack (internal/devstack)
// alike.
package secretfile

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the content of the file at path less its trailing CRs and
// newlines. A file that holds nothing else (a secret created from an empty
// value, or never filled in) is an error naming path, never an empty
// password; so is a file that cannot be read (the os error, which names
// path).
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty: it must hold the password", path)
	}
	return v, nil
}
