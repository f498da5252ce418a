package chaos

import (
	"context"
	"net/mail"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Scenario 2: Redis loses the stream mid-stream, once by FLUSHALL and once
// by a restart without persistence → nothing lost: Postgres has every
// message, the relay notices the stream's epoch is gone and publishes every
// undelivered message again.
func TestRedisLost(t *testing.T) {
	rate := scale(150.0, 300.0)
	length := scale(3*time.Second, 10*time.Second)

	// A relay slower than the load (2 senders × 20 ms: 100 messages/s), so
	// the stream holds a backlog when it is lost.
	smtp := testenv.StartSMTP(t)
	smtp.ReplyFor(func(int, *mail.Message) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	s := startStack(t, options{smtp: smtp, env: map[string]string{"WORKER_CONCURRENCY": "2"}})
	rdb := s.Redis.Client()

	faults := []struct {
		name   string
		inject func()
	}{
		{"redis-flushall", func() {
			if err := rdb.FlushAll(context.Background()).Err(); err != nil {
				t.Fatalf("FLUSHALL: %v", err)
			}
		}},
		{"redis-restart", func() {
			s.Redis.Stop() // killed: no persistence, everything gone
			time.Sleep(500 * time.Millisecond)
			s.Redis.Start()
		}},
	}
	for _, f := range faults {
		l := newLoad(s, f.name, 16)
		ctx, stop := context.WithTimeout(context.Background(), length)
		done := make(chan struct{})
		go func() { l.paced(ctx, rate, 16); close(done) }()

		time.Sleep(length / 2)
		var queued, sending int
		_ = s.scalar(`SELECT count(*) FROM emails WHERE status = 'queued'`, &queued)
		_ = s.scalar(`SELECT count(*) FROM emails WHERE status = 'sending'`, &sending)
		streamLen, _ := rdb.XLen(context.Background(), "carteiro:emails").Result()
		f.inject()
		note(t, "%s: at the fault %d row(s) queued, %d sending, %d stream entries", f.name, queued, sending, streamLen)
		if queued == 0 {
			t.Logf("%s: no backlog when Redis lost the stream: the fault tested little", f.name)
		}
		<-done
		stop()

		rs := l.snapshot()
		if fs := failures(rs); len(fs) > 0 {
			t.Fatalf("%s: %d POST(s) failed: %s", f.name, len(fs), describe(fs))
		}
		if n := len(rs) - len(accepted(rs)); n > 0 {
			t.Errorf("%s: %d POST(s) not accepted (%s); Redis is not on the accept path", f.name, n, byStatus(rs))
		}
		s.settle(expectation{name: f.name, ids: accepted(rs)})
	}
}
