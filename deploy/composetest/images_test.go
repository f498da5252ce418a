package composetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestBaseNeeds(t *testing.T) {
	found := func(string) (string, error) { return "/usr/sbin/debootstrap", nil }
	notFound := func(string) (string, error) { return "", errors.New("not found") }
	for _, tc := range []struct {
		name     string
		euid     int
		lookPath func(string) (string, error)
		want     []string // the start of each need
	}{
		{"root with debootstrap", 0, found, nil},
		{"not root", 1000, found, []string{"root"}},
		{"no debootstrap", 0, notFound, []string{"debootstrap on PATH"}},
		{"neither", 1000, notFound, []string{"root", "debootstrap on PATH"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := BaseNeeds(tc.euid, tc.lookPath)
			if !slices.EqualFunc(got, tc.want, strings.HasPrefix) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
