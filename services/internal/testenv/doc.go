// Package testenv gives carteiro's tests real dependencies: a fresh
// database on the machine's Postgres, and private Redis and Postgres
// servers on free ports for tests that stop or break them. Outside CI a
// missing dependency skips the test with the reason; in CI (CI=true) it
// fails the test, loudly.
package testenv
