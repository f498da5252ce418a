package deploy

import (
	"fmt"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/carteiro/carteiro/services/internal/config"
)

// dockerStopGrace is how long `docker compose stop` waits after the stop
// signal before SIGKILL when a service sets no stop_grace_period.
const dockerStopGrace = 10 * time.Second

// serviceStopTimes are the services whose shutdown carteiro's
// configuration bounds: the longest each takes from its stop signal to
// exit, read from the configuration the service's environment gives it, or
// for the frontend from nginx's: the image's SIGQUIT makes nginx finish its
// requests in flight, the longest a proxied one waiting proxy_read_timeout
// for the api.
var serviceStopTimes = map[string]func(t *testing.T, getenv func(string) string) (time.Duration, error){
	"app": func(_ *testing.T, getenv func(string) string) (time.Duration, error) {
		c, err := config.LoadAPI(getenv)
		return c.StopTime(), err
	},
	"worker": func(_ *testing.T, getenv func(string) string) (time.Duration, error) {
		c, err := config.LoadWorker(getenv)
		return c.ShutdownTimeout, err
	},
	"frontend": func(t *testing.T, _ func(string) string) (time.Duration, error) {
		return nginxDuration(t, "proxy_read_timeout"), nil
	},
}

// stopGraceProblem says what is wrong with the stop grace period of
// service name, "" if it outlasts the service's configured shutdown.
func stopGraceProblem(t *testing.T, name string, svc types.ServiceConfig) string {
	t.Helper()
	stop, err := serviceStopTimes[name](t, configEnv(t, composeEnv(svc)))
	if err != nil {
		return fmt.Sprintf("configuration: %v", err)
	}
	grace := dockerStopGrace
	if svc.StopGracePeriod != nil {
		grace = time.Duration(*svc.StopGracePeriod)
	}
	if grace <= stop {
		return fmt.Sprintf("stop_grace_period %s (set=%v): want more than its shutdown, %s", grace, svc.StopGracePeriod != nil, stop)
	}
	return ""
}

// TestStopGracePeriods: Docker waits longer than each service's own
// shutdown (the api's SHUTDOWN_DELAY, SHUTDOWN_DRAIN and requests in
// flight; the worker's WORKER_SHUTDOWN_TIMEOUT; nginx's proxied requests in
// flight) before SIGKILL, in the
// base deployment and with the overlay. Each service without its
// stop_grace_period (Docker's 10 s) must fail the check.
func TestStopGracePeriods(t *testing.T) {
	for label, p := range projects(t) {
		for _, name := range sortedKeys(serviceStopTimes) {
			t.Run(label+"/"+name, func(t *testing.T) {
				svc, ok := p.Services[name]
				if !ok {
					t.Fatalf("no service %s", name)
				}
				if problem := stopGraceProblem(t, name, svc); problem != "" {
					t.Error(problem)
				}
				svc.StopGracePeriod = nil
				if stopGraceProblem(t, name, svc) == "" {
					t.Errorf("without stop_grace_period (Docker's %s) the check passed: it cannot fail", dockerStopGrace)
				}
			})
		}
	}
}
