// Package health serves the liveness and readiness endpoints of a process's
// internal port, and checks them from the command line for container
// healthchecks (the images have no shell and no curl).
package health
