package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// On SIGTERM the api fails its readiness and refuses new connections, but
// still answers on a keep-alive connection a proxy holds, with
// "Connection: close"; it stops once that connection is gone.
func TestStopDrains(t *testing.T) {
	db := testenv.NewDatabase(t)
	api := startAPIWith(t, db, testenv.StartRedis(t).Addr, map[string]string{"SHUTDOWN_DRAIN": "1m"})
	proxy := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 20 * time.Second}
	post := func() (*http.Response, bool) {
		t.Helper()
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api.URL+"/api/messages", strings.NewReader(jsonBody("a", "b")))
		req.Header.Set("Content-Type", "application/json")
		res, err := proxy.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		// Read to the end, or the client closes the connection.
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res, reused
	}
	if res, _ := post(); res.StatusCode != http.StatusAccepted || res.Close {
		t.Fatalf("before the stop: got %d (close %v), want 202 on a kept connection", res.StatusCode, res.Close)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- api.stop() }()
	api.waitNotReady(t)
	api.waitRefused(t)
	res, reused := post()
	if res.StatusCode != http.StatusAccepted || !reused || !res.Close {
		t.Errorf("on the kept connection while stopping: got %d (reused %v, Connection: close %v), want 202, reused, close",
			res.StatusCode, reused, res.Close)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v", err)
	}
	if n := api.log.count(`"connections_left":0`); n != 1 {
		t.Errorf("drained with no connection left: got %d log lines, want 1", n)
	}
	if n := api.countRows(t); n != 2 {
		t.Errorf("rows: got %d, want 2", n)
	}
}

// With SHUTDOWN_DELAY the api, already not ready, still accepts new
// connections for that long (a Kubernetes Service may still route them
// here), answering with "Connection: close"; then it refuses them.
func TestStopDelaysClosingTheListener(t *testing.T) {
	api := startAPIWith(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr,
		map[string]string{"SHUTDOWN_DELAY": "5s", "SHUTDOWN_DRAIN": "1m"})
	stopped := make(chan error, 1)
	go func() { stopped <- api.stop() }()
	api.waitNotReady(t)
	fresh := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
	res, err := fresh.Post(api.URL+"/api/messages", "application/json", strings.NewReader(jsonBody("a", "b")))
	if err != nil {
		t.Fatalf("POST on a new connection during the delay: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || !res.Close {
		t.Errorf("POST on a new connection during the delay: got %d (Connection: close %v), want 202 and close", res.StatusCode, res.Close)
	}
	api.waitRefused(t)
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v", err)
	}
	if n := api.countRows(t); n != 1 {
		t.Errorf("rows: got %d, want 1", n)
	}
}

// waitNotReady returns once the api's readiness fails.
func (a *apiProcess) waitNotReady(t *testing.T) {
	t.Helper()
	waitFor(t, "readiness to fail", func() bool {
		res, err := http.Get(a.Internal + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusServiceUnavailable
	})
}

// waitRefused returns once the public listener refuses connections.
func (a *apiProcess) waitRefused(t *testing.T) {
	t.Helper()
	waitFor(t, "the listener to refuse connections", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(a.URL, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}
