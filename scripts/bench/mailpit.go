package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// mailpit talks to the stack's Mailpit API (its UI listener).
type mailpit struct {
	base string // http://host:port
	c    *http.Client
}

func newMailpit(base string) *mailpit {
	return &mailpit{base: base, c: &http.Client{Timeout: 2 * time.Minute}}
}

// Clear deletes every message.
func (m *mailpit) Clear(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, m.base+"/api/v1/messages", nil)
	resp, err := m.c.Do(req)
	if err != nil {
		return fmt.Errorf("mailpit: clear: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit: clear: %s", resp.Status)
	}
	return nil
}

// Count is how many messages Mailpit holds.
func (m *mailpit) Count(ctx context.Context) (int64, error) {
	var body struct {
		Total int64 `json:"total"`
	}
	if err := get(ctx, m.c, m.base+"/api/v1/messages?limit=1", decodeJSON(&body)); err != nil {
		return 0, fmt.Errorf("mailpit: count: %w", err)
	}
	return body.Total, nil
}

// LatestRaw is the newest message Mailpit holds, as it stored it (its
// Received and Return-Path fields included): Mailpit's ID "latest" (since
// v1.11), which answers 404 when it holds none.
func (m *mailpit) LatestRaw(ctx context.Context) (raw []byte, err error) {
	if err := get(ctx, m.c, m.base+"/api/v1/message/latest/raw", func(r io.Reader) (err error) {
		raw, err = io.ReadAll(r)
		return err
	}); err != nil {
		return nil, fmt.Errorf("mailpit: newest message: %w", err)
	}
	return raw, nil
}

// expect checks that Mailpit holds want messages (more means a message was
// delivered twice, which at-least-once delivery allows; fewer means lost).
func (m *mailpit) expect(ctx context.Context, want int64) (got int64, err error) {
	// Mailpit stores a message before it answers 250, so no waiting is
	// needed; one short retry covers a slow count under load.
	for i := 0; i < 3; i++ {
		if got, err = m.Count(ctx); err == nil && got >= want {
			return got, nil
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return got, err
		}
	}
	if err != nil {
		return got, err
	}
	return got, fmt.Errorf("mailpit holds %d message(s), want %d: %d lost", got, want, want-got)
}
