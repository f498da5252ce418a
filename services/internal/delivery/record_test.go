package delivery

import (
	"testing"
	"time"
)

// gatherOutcomes batches what is waiting, then waits for the other senders'
// outcomes until every sender is in, the delay is over or the senders are
// done. The cases that must not wait use a delay of an hour: if one waited,
// the test would hang and fail at its deadline instead of passing.
func TestGatherOutcomes(t *testing.T) {
	for _, c := range []struct {
		name    string
		waiting int  // outcomes on the channel before the call, after the first
		late    int  // outcomes sent once the call is waiting
		close   bool // the channel closed after those
		delay   time.Duration
		senders int
		want    int
	}{
		{"no delay takes what waits", 2, 0, false, 0, 4, 3},
		{"no delay, nothing waiting", 0, 0, false, 0, 4, 1},
		{"every sender in already", 3, 0, false, time.Hour, 4, 4},
		{"more waiting than senders", 6, 0, false, time.Hour, 4, 7},
		{"late outcomes until every sender is in", 0, 3, false, time.Hour, 4, 4},
		{"senders done while waiting", 1, 1, true, time.Hour, 4, 3},
		{"one sender never waits", 0, 0, false, time.Hour, 1, 1},
		{"the delay ends the wait", 1, 0, false, time.Millisecond, 4, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			outcomes := make(chan *job, c.waiting+c.late)
			for range c.waiting {
				outcomes <- &job{}
			}
			got := make(chan []*job, 1)
			go func() { got <- gatherOutcomes(outcomes, &job{}, c.delay, c.senders) }()
			for range c.late {
				outcomes <- &job{}
			}
			if c.close {
				close(outcomes)
			}
			if batch := <-got; len(batch) != c.want {
				t.Errorf("got a batch of %d, want %d", len(batch), c.want)
			}
		})
	}
}

// A batch never exceeds maxOutcomeBatch, however many are waiting.
func TestGatherOutcomesBounded(t *testing.T) {
	outcomes := make(chan *job, 2*maxOutcomeBatch)
	for range 2 * maxOutcomeBatch {
		outcomes <- &job{}
	}
	if got := len(gatherOutcomes(outcomes, &job{}, time.Hour, 2*maxOutcomeBatch)); got != maxOutcomeBatch {
		t.Errorf("got a batch of %d, want %d", got, maxOutcomeBatch)
	}
}
