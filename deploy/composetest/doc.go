// Package composetest proves carteiro's compose deployment under a real Docker
// Engine: the harness behind `make test-compose`, which `make test` calls.
//
// No image registry can be reached where it runs, so the official images the
// compose files name are replaced by stand-ins built here, each from a
// Dockerfile in standins/<name>/ that says in its first lines which image it
// stands for and what of that image's contract it keeps. They are selected
// only through the image variables of .env, given in the environment
// (POSTGRES_IMAGE=carteiro-standin/postgres:<hash> and so on); the compose
// files are used as they are, with one test-only override file
// (compose.test-override.yml) for the two images that cannot be had at all.
// services/Dockerfile is built for real, on stand-ins for its GO_IMAGE and
// RUNTIME_IMAGE.
//
// Every image is tagged with a hash of everything it is built from (the
// build context, the base image's ID, the build arguments), so a second run
// on the same machine builds nothing that has not changed. The Debian base is
// made with debootstrap and `docker import`. StandinImages builds them for
// cmd standinenv/, which `make up STANDINS=1` runs (the stack on the
// stand-ins, for a machine that reaches no registry); the test runs
// standinenv as make does, once, and runs exactly the images it prints.
//
// The test itself (compose_engine_test.go, build tag composetest) starts the
// stack under its own project name, published ports and subnet, with `up
// --build --wait`, and checks states, never durations: health, the mail and
// its trace, network segmentation probed from inside each container's network
// namespace (cmd probe/), published ports, run-time hardening, restarts and
// kills under load, a healthcheck that follows its dependency, data kept
// across down and up, and nothing left after `down -v`. Durations are printed.
package composetest
