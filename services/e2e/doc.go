// Package e2e tests carteiro as a user meets it: the native stack started
// by package devstack (the launcher `make dev` runs) with real nginx, api,
// worker and Mailpit processes, on free ports, against a fresh database
// and a private Redis. It has tests only.
package e2e
