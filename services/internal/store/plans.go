package store

import "github.com/jackc/pgx/v5/pgxpool"

// GenericPlans makes the pool's sessions keep one generic plan per prepared
// statement (plan_cache_mode = force_generic_plan, PostgreSQL 12+), for a
// pool that runs only the delivery statements: ClaimBatch,
// RecordOutcomes, RenewLeases, ReleaseExpired, DeadLetter. Each reaches
// its rows by primary key from an array of ids, or through a partial
// index whose predicate is a literal, so a generic plan is the plan a
// custom one would be. Left to choose (auto), PostgreSQL kept planning
// the claim and the outcome anew on every execution: their generic plan
// costs more (it assumes ten ids in an array where a custom plan counts
// them), and planning those statements costs several times their
// execution (bench/README.md, findings on the drain's CPU).
//
// A generic plan is made at a statement's first execution in a session
// and kept until the table's statistics change (ANALYZE, autovacuum's
// included, invalidates it) or the connection is closed (at most
// MaxConnLifetime, 30 minutes): a worker started on an empty table plans
// sequential scans until autovacuum first analyzes it (after 50 rows
// change, within a minute by default).
func GenericPlans() Option {
	return func(pc *pgxpool.Config) {
		pc.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
}
