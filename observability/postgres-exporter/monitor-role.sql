-- carteiro — postgres_exporter's login role, for compose (the one-shot
-- service db-monitor-role runs it at every `up`; natively internal/devstack
-- does the same in Go, SetupMonitorRole). Run by psql as the database's
-- owner (a superuser in compose) with two variables:
--
--   psql -v role=carteiro_monitor -v password_file=/run/secrets/pg_exporter_password -f monitor-role.sql
--
-- The role logs in with the secret's password and is a member of
-- pg_monitor (Postgres's predefined role for monitoring: the statistics
-- views, the settings, pg_ls_waldir) and nothing else: it owns nothing and
-- may read no table of carteiro's. Idempotent: a second run only sets the
-- password again (after the secret changed).
\set ON_ERROR_STOP on
-- The password comes from the file, never from the command line.
\set password `cat :password_file`

SELECT format('CREATE ROLE %I LOGIN IN ROLE pg_monitor', :'role')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec

ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
GRANT pg_monitor TO :"role";
