package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRatioByRound(t *testing.T) {
	drains := []deliveryRun{{Round: 1, Rate: 100}, {Round: 2, Rate: 90}, {Round: 3, Rate: 80}}
	for _, tc := range []struct {
		name     string
		ceilings []smtpRun
		want     []float64
	}{
		{"each round its own ceiling", []smtpRun{{Round: 3, Rate: 160}, {Round: 1, Rate: 200}, {Round: 2, Rate: 100}}, []float64{0.5, 0.9, 0.5}},
		{"a round without a ceiling left out", []smtpRun{{Round: 1, Rate: 200}, {Round: 3, Rate: 0}}, []float64{0.5}},
		{"no ceilings", nil, nil},
	} {
		if got := ratioByRound(drains, tc.ceilings); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAcceptPlans(t *testing.T) {
	all16 := "json c16,json+key c16,form c16,form+key c16"
	for _, tc := range []struct {
		wide, want string
		bad        bool
	}{
		{"json+key", all16 + ",json+key c64", false},
		{"form+key, json+key", all16 + ",json+key c64,form+key c64", false},
		{"all", all16 + ",json c64,json+key c64,form c64,form+key c64", false},
		{"none", all16, false},
		{"xml", "", true},
		{"json+nokey", "", true},
	} {
		plans, err := acceptPlans([]int{16, 64}, tc.wide)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %v, want an error", tc.wide, plans)
			}
			continue
		}
		var got []string
		for _, p := range plans {
			got = append(got, fmt.Sprintf("%s c%d", p.Variant, p.Connections))
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("%q: got %v (%v), want %s", tc.wide, got, err, tc.want)
		}
	}
	if _, err := loadSettings(func(k string) string { return map[string]string{"BENCH_ACCEPT_C64": "yaml"}[k] }); err == nil {
		t.Errorf("BENCH_ACCEPT_C64=yaml accepted")
	}
}

func TestChooseE2ERate(t *testing.T) {
	sets := []*acceptSet{
		{Variant: "json", Connections: 16, MedianRPS: 9000}, // not the variant phase 4 posts
		{Variant: "json+key", Connections: 16, MedianRPS: 3000},
		{Variant: "json+key", Connections: 64, MedianRPS: 4000},
		{Variant: "form+key", Connections: 16, MedianRPS: 5000},
	}
	for _, tc := range []struct {
		name       string
		sets       []*acceptSet
		smtpSource float64
		want       e2eRate
	}{
		{"accept is the smaller", sets, 5000, e2eRate{Rate: 2000, ChosenBy: "accept", HalfAccept: 2000, MaxAccept: 4000, AcceptSet: "json+key c64", SMTPSource: 4000}},
		{"smtp-source is the smaller", sets, 1000, e2eRate{Rate: 800, ChosenBy: "smtp-source", HalfAccept: 2000, MaxAccept: 4000, AcceptSet: "json+key c64", SMTPSource: 800}},
		{"a tie goes to accept", sets, 2500, e2eRate{Rate: 2000, ChosenBy: "accept", HalfAccept: 2000, MaxAccept: 4000, AcceptSet: "json+key c64", SMTPSource: 2000}},
		{"no smtp-source figure", sets[:2], 0, e2eRate{Rate: 1500, ChosenBy: "accept", HalfAccept: 1500, MaxAccept: 3000, AcceptSet: "json+key c16"}},
		{"no accept figure", sets[:1], 1000, e2eRate{Rate: 0, ChosenBy: "accept", SMTPSource: 800}},
	} {
		if got := chooseE2ERate(tc.sets, tc.smtpSource); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestRSSSampledPeaks(t *testing.T) {
	var s rssSampled
	s.observe("1-2", map[string]procMem{"api": {PID: 10, RSSMiB: 30, HWMMiB: 31}, "worker": {PID: 20, RSSMiB: 20, HWMMiB: 22}})
	s.observe("3", map[string]procMem{"api": {PID: 10, RSSMiB: 40, HWMMiB: 41}, "worker": {PID: 21, RSSMiB: 18, HWMMiB: 19}})
	s.observe("4", map[string]procMem{"api": {PID: 10, RSSMiB: 35, HWMMiB: 41}, "api-2": {PID: 11, RSSMiB: 70, HWMMiB: 50}})
	for _, tc := range []struct {
		name   string
		want   rssPeak
		kind   string
		kindOK bool
		peak   float64
	}{
		{"api", rssPeak{RSSMiB: 40, Phase: "3", HWMMiB: 41, PIDs: []int{10}}, "api", true, 70},
		{"worker", rssPeak{RSSMiB: 20, Phase: "1-2", HWMMiB: 22, PIDs: []int{20, 21}}, "worker", true, 22},
	} {
		got := s.Processes[tc.name]
		if got == nil || got.RSSMiB != tc.want.RSSMiB || got.Phase != tc.want.Phase || got.HWMMiB != tc.want.HWMMiB || !slices.Equal(got.PIDs, tc.want.PIDs) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		if p, ok := s.peak(tc.kind); ok != tc.kindOK || p != tc.peak {
			t.Errorf("peak(%s): got %v %v, want %v", tc.kind, p, ok, tc.peak)
		}
	}
	if s.Samples != 3 {
		t.Errorf("samples: got %d, want 3", s.Samples)
	}
	if _, ok := s.peak("mailpit"); ok {
		t.Errorf("peak(mailpit) found")
	}
	var none *rssSampled
	if _, ok := none.peak("api"); ok {
		t.Errorf("peak of no sampling found")
	}
}

// TestRSSSampler samples this test's own process from /proc until stopped.
func TestRSSSampler(t *testing.T) {
	pid := os.Getpid()
	r := startRSSSampler(10*time.Millisecond, func() map[string]int { return map[string]int{"api": pid, "worker": -1} }, readProcMem)
	time.Sleep(50 * time.Millisecond)
	r.setPhase("3")
	time.Sleep(50 * time.Millisecond)
	s := r.stop()
	p := s.Processes["api"]
	if s.Samples < 2 || p == nil || p.RSSMiB <= 0 || p.HWMMiB < p.RSSMiB || !slices.Equal(p.PIDs, []int{pid}) {
		t.Fatalf("got %+v (api %+v), want samples of pid %d", s, p, pid)
	}
	if _, ok := s.Processes["worker"]; ok {
		t.Errorf("a process that does not exist was sampled")
	}
	if again := r.stop(); again.Samples != s.Samples {
		t.Errorf("a second stop sampled again: %d, then %d", s.Samples, again.Samples)
	}
}
