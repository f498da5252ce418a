package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// A 202 means stored and a 503 means not, even when the COMMIT outlives
// the request's deadline: COMMITs stalled past it (a deferred trigger waits
// at a gate the test holds) then commit or roll back, amid a steady load of
// other messages, with and without an Idempotency-Key. Every 202 has its
// row, every 503 has none, and nothing else is answered.
func TestAnswersTellTheCommitsOutcome(t *testing.T) {
	db := testenv.NewDatabase(t)
	api := startAPIWith(t, db, testenv.StartRedis(t).Addr, map[string]string{"DB_QUERY_TIMEOUT": "1s"})
	testenv.StallCommits(t, db)

	type answer struct {
		mensagem, assunto string
		status            int
		retryAfter        string
	}
	var mu sync.Mutex
	var answers []answer
	post := func(assunto, mensagem string, keyed bool) {
		var headers []string
		if keyed {
			headers = []string{"Idempotency-Key", "k-" + strings.ReplaceAll(mensagem, " ", "-")}
		}
		res, _ := api.post(t, "/api/messages", "application/json", jsonBody(assunto, mensagem), headers...)
		mu.Lock()
		answers = append(answers, answer{mensagem, assunto, res.StatusCode, res.Header.Get("Retry-After")})
		mu.Unlock()
	}

	// The steady load: two clients posting one message after another.
	ctx, stopLoad := context.WithCancel(context.Background())
	var load sync.WaitGroup
	for c := range 2 {
		load.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				post("load", fmt.Sprintf("load %d-%d", c, i), i%2 == 1)
			}
		})
	}
	// One stalled COMMIT at a time, so each is past its deadline (the api
	// said it asks pg_xact_status) before its gate opens. A COMMIT meant to
	// commit is sometimes ended first by the cancel request pgx sends when
	// the deadline closes its connection (see the store's
	// TestCommitAfterTheDeadlineTellsTheTruth); its answer is then a
	// truthful 503, and it gets up to three tries to commit.
	check, err := pgx.Connect(context.Background(), db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(context.Background())
	unknown, gate := 0, int64(0)
	stall := func(assunto string, keyed bool) (stored bool) {
		gate++
		g := testenv.CloseGate(t, db, gate)
		done := make(chan struct{})
		mensagem := fmt.Sprintf("stalled %d", gate)
		go func() {
			defer close(done)
			post(assunto, mensagem, keyed)
		}()
		g.WaitBlocked()
		unknown++
		waitFor(t, "the api to find its COMMIT's outcome unknown", func() bool {
			return api.log.count("commit outcome unknown") >= unknown
		})
		g.Open()
		<-done
		var n int
		if err := check.QueryRow(context.Background(), `SELECT count(*) FROM emails WHERE mensagem = $1`, mensagem).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for _, keyed := range []bool{false, true} {
		committed := false
		for try := 1; try <= 3 && !committed; try++ {
			committed = stall(fmt.Sprintf("gate %d", gate+1), keyed)
		}
		if !committed {
			t.Errorf("keyed %v: no COMMIT committed after its deadline in 3 tries, want one", keyed)
		}
		if stall(fmt.Sprintf("gate %d abort", gate+1), keyed) {
			t.Errorf("keyed %v: a COMMIT refused at the gate was stored", keyed)
		}
	}
	stopLoad()
	load.Wait()

	conn, err := pgx.Connect(context.Background(), db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	stored := map[string]int{}
	rows, err := conn.Query(context.Background(), `SELECT mensagem, count(*) FROM emails GROUP BY mensagem`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m string
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			t.Fatal(err)
		}
		stored[m] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	byStatus := map[string]int{}
	for _, a := range answers {
		kind := "load"
		if strings.HasPrefix(a.assunto, "gate") {
			kind = a.assunto
		}
		byStatus[fmt.Sprintf("%s %d", kind, a.status)]++
		switch {
		case a.status == http.StatusAccepted && stored[a.mensagem] != 1:
			t.Errorf("%s (%s): 202 with %d rows, want 1", a.mensagem, a.assunto, stored[a.mensagem])
		case a.status == http.StatusServiceUnavailable && stored[a.mensagem] != 0:
			t.Errorf("%s (%s): 503 with %d rows, want none", a.mensagem, a.assunto, stored[a.mensagem])
		case a.status == http.StatusServiceUnavailable && a.retryAfter == "":
			t.Errorf("%s: 503 without Retry-After", a.mensagem)
		case a.status != http.StatusAccepted && a.status != http.StatusServiceUnavailable:
			t.Errorf("%s (%s): got %d, want 202 or 503", a.mensagem, a.assunto, a.status)
		}
	}
	t.Logf("answers: %v", byStatus)
	// The commits that landed after their deadline were answered 202, the
	// ones rolled back after it 503 (checked with every answer above).
	if n := api.log.count(`"status":"committed"`); n < 2 {
		t.Errorf("COMMITs found committed after their deadline: got %d, want at least 2", n)
	}
}

// What a store error answers: only "not stored" is a 503; an unknown
// outcome is a 500 that says so.
func TestStoreErrorAnswers(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/api/messages", nil)
	log := testenv.Logger(t)
	for _, c := range []struct {
		err  error
		want *apiError
	}{
		{store.ErrNotFound, errNotFound},
		{fmt.Errorf("insert message: %w", context.DeadlineExceeded), errUnavailable},
		{fmt.Errorf("commit rolled back (xid 7): %w", io.ErrUnexpectedEOF), errUnavailable},
		{fmt.Errorf("%w: xid 7, commit: %v", store.ErrOutcomeUnknown, io.ErrUnexpectedEOF), errOutcomeUnknown},
		{errors.New("syntax error"), errInternal},
	} {
		if got := storeError(req, log, c.err); got != c.want {
			t.Errorf("%v: got %d %q, want %d %q", c.err, got.Status, got.Message, c.want.Status, c.want.Message)
		}
	}
	if errOutcomeUnknown.Status == http.StatusServiceUnavailable {
		t.Errorf("an unknown outcome answers 503, which means not stored")
	}
}
