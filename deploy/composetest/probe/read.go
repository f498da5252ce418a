package main

import "os"

// readAll reads each file whole and reports only whether that worked and
// its length.
func readAll(paths []string) []read {
	out := make([]read, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			out = append(out, read{Path: p, Error: err.Error()})
			continue
		}
		out = append(out, read{Path: p, OK: true, Bytes: len(b)})
	}
	return out
}
