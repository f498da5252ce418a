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

// serviceStopTimes are the services whose shutdown carteiro's code bounds:
// the longest each takes from SIGTERM to exit, read from the configuration
// the service's environment gives it.
var serviceStopTimes = map[string]func(getenv func(string) string) (time.Duration, error){
	"app": func(getenv func(string) string) (time.Duration, error) {
		c, err := config.LoadAPI(getenv)
		return c.StopTime(), err
	},
	"worker": func(getenv func(string) string) (time.Duration, error) {
		c, err := config.LoadWorker(getenv)
		return c.ShutdownTimeout, err
	},
}

// stopGraceProblem says what is wrong with the stop grace period of
// service name, "" if it outlasts the service's configured shutdown.
func stopGraceProblem(t *testing.T, name string, svc types.ServiceConfig) string {
	t.Helper()
	stop, err := serviceStopTimes[name](configEnv(t, composeEnv(svc)))
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
// flight; the worker's WORKER_SHUTDOWN_TIMEOUT) before SIGKILL, in the
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
