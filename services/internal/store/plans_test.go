package store

import (
	"context"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// With GenericPlans, the claim and the outcome are planned once per
// session and the plan kept (pg_prepared_statements counts no custom
// plan); without it, PostgreSQL plans them anew each time, the cost the
// option removes. Each store has one connection, so every statement runs
// in the session whose prepared statements are read.
func TestGenericPlans(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		generic bool
	}{
		{"auto", nil, false},
		{"GenericPlans", []Option{GenericPlans()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := testenv.NewDatabase(t)
			db.MaxConns = 1
			s, err := Open(ctx, db, testenv.Logger(t), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			for range 8 {
				ids := []string{newRow(t, s), newRow(t, s)}
				claims, err := s.ClaimBatch(ctx, []ClaimRequest{{ID: ids[0], MessageID: ids[0] + "@example.test"}, {ID: ids[1], MessageID: ids[1] + "@example.test"}}, time.Minute, 5)
				if err != nil || len(claims) != 2 {
					t.Fatalf("claim: got %d claims %v, want 2", len(claims), err)
				}
				outcomes := []Outcome{{Lease: Lease{ID: ids[0], Token: 1}, Kind: OutcomeSent}, {Lease: Lease{ID: ids[1], Token: 1}, Kind: OutcomeFailed, Reason: "451", Delay: time.Second}}
				if res, err := s.RecordOutcomes(ctx, outcomes); err != nil || res[0] != nil || res[1] != nil {
					t.Fatalf("record: got %v %v, want both applied", res, err)
				}
			}
			for _, stmt := range []struct{ name, pattern string }{
				{"claim", "%fencing_token = fencing_token + 1%"},
				{"outcome", "%WITH o AS%"},
			} {
				var generic, custom int64
				if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)
					FROM pg_prepared_statements WHERE statement LIKE $1`, stmt.pattern).Scan(&generic, &custom); err != nil {
					t.Fatal(err)
				}
				if tc.generic && (custom != 0 || generic != 8) {
					t.Errorf("%s: got %d generic and %d custom plans, want 8 generic and no custom", stmt.name, generic, custom)
				}
				if !tc.generic && custom < 5 {
					t.Errorf("%s: got %d generic and %d custom plans, want the custom plans this option avoids", stmt.name, generic, custom)
				}
			}
		})
	}
}
