// Package deploy holds the checks that keep carteiro's deployment files honest.
//
// It has no production code: its tests load docker-compose.yml (alone and with
// docker-compose.observability.yml) through compose-go, the same loader the
// docker compose CLI uses, together with the repository's .env, and assert the
// rules the deployment promises: a single published edge port, internal-only
// networks for the database and the queue, pinned images, dropped
// capabilities, read-only root filesystems, non-root users, healthchecks,
// healthy-ordered start-up and secrets that are files, never environment values.
// They also read services/Dockerfile so that the built images stay in step.
//
// No Docker engine is needed: nothing is built or started.
package deploy
