package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var metricsClient = &http.Client{Timeout: 10 * time.Second}

// Metric reads one sample from the Prometheus text exposition a process
// serves at http://addr/metrics: name exactly as written there, with its
// labels if it has any (`carteiro_messages_total{outcome="sent"}`). It
// returns -1 and an error when the sample is absent.
func Metric(addr, name string) (float64, error) {
	res, err := metricsClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	}
	return -1, errors.Join(sc.Err(), fmt.Errorf("%s: no sample %s", addr, name))
}
