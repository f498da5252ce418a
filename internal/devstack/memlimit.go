package devstack

import (
	"regexp"
	"strconv"
)

// memLimitEnv is the GOMEMLIMIT of an api or a worker: ServiceMemLimit,
// or nothing when it is "off".
//
// Why a limit: carteiro's budget is 64 MiB of RSS per service (the bench's
// phase 5). Without one, Go lets the heap grow to twice what was live at
// the last collection, and under a burst (phase 4's backlog of requests,
// with observability on the span batches waiting for export) that goal
// overshoots the budget although the live heap stays far below it. With
// GOMEMLIMIT the collector runs earlier instead and returns freed pages to
// the system, so RSS stays near the limit plus the binary's resident text.
// It is a soft limit: memory that is really live is never refused (the
// runtime caps the collector's CPU), so nothing accepted is ever dropped
// for it. Kubernetes sets it from the container's memory limit instead
// (deploy/kubernetes).
func (c Config) memLimitEnv() []string {
	if c.ServiceMemLimit == "" || c.ServiceMemLimit == "off" {
		return nil
	}
	return []string{"GOMEMLIMIT=" + c.ServiceMemLimit}
}

// memLimitSyntax is GOMEMLIMIT's: a number of bytes with an optional unit
// B, KiB, MiB, GiB or TiB (package runtime's documentation).
var memLimitSyntax = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

func validMemLimit(s string) bool {
	m := memLimitSyntax.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	return err == nil && n > 0
}
