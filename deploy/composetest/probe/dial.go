package main

import (
	"context"
	"net"
	"sync"
	"time"
)

// dialAll dials every target at once and returns the outcomes in the
// order given.
func dialAll(ctx context.Context, targets []string, timeout time.Duration) []dial {
	out := make([]dial, len(targets))
	var wg sync.WaitGroup
	for i, target := range targets {
		wg.Go(func() {
			out[i] = dialOne(ctx, target, timeout)
		})
	}
	wg.Wait()
	return out
}

func dialOne(ctx context.Context, target string, timeout time.Duration) dial {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return dial{Target: target, Error: err.Error()}
	}
	conn.Close()
	return dial{Target: target, OK: true}
}
