package composetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Event is one container event of the engine (`docker events`).
type Event struct {
	Action  string // start, die, kill, health_status: healthy, ...
	Service string // the compose service
	ID      string // the container
	Time    time.Time
}

// Events records the engine's container events for one compose project,
// from Watch until the context ends.
type Events struct {
	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

// Watch starts `docker events` for the project's containers in the
// background; it stops when ctx ends.
func (p *Project) Watch(ctx context.Context) (*Events, error) {
	cmd := exec.CommandContext(ctx, "docker", "events", "--format", "{{json .}}",
		"--filter", "type=container", "--filter", "label=com.docker.compose.project="+p.Name)
	cmd.Env = p.Engine.Env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ev := &Events{notify: make(chan struct{})}
	go func() {
		defer cmd.Wait()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var raw struct {
				Action   string
				TimeNano int64 `json:"timeNano"`
				Actor    struct {
					ID         string
					Attributes map[string]string
				}
			}
			if json.Unmarshal(sc.Bytes(), &raw) != nil {
				continue
			}
			ev.add(Event{
				Action:  raw.Action,
				Service: raw.Actor.Attributes["com.docker.compose.service"],
				ID:      raw.Actor.ID,
				Time:    time.Unix(0, raw.TimeNano),
			})
		}
	}()
	return ev, nil
}

func (ev *Events) add(e Event) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.events = append(ev.events, e)
	close(ev.notify)
	ev.notify = make(chan struct{})
}

// All returns the events recorded so far, oldest first.
func (ev *Events) All() []Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]Event(nil), ev.events...)
}

// Wait returns the first event after since of service whose action starts
// with action, waiting for it until ctx ends.
func (ev *Events) Wait(ctx context.Context, since time.Time, service, action string) (Event, error) {
	for {
		ev.mu.Lock()
		for _, e := range ev.events {
			if !e.Time.Before(since) && e.Service == service && strings.HasPrefix(e.Action, action) {
				ev.mu.Unlock()
				return e, nil
			}
		}
		ch := ev.notify
		ev.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("waiting for %s %q: %w", service, action, ctx.Err())
		}
	}
}
