package lab_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

const corpusDir = "../testdata/conformance"

// Probe timeouts: the first pass is short so a step with denied probes
// costs little; every probe whose measurement disagrees with the
// prediction is measured again with the long timeout before it counts as
// a difference, so a probe that was merely slow on a loaded machine is not
// reported (a probe cannot be reached by accident, so only "denied" is
// retried in effect).
const (
	firstTimeout = 300 * time.Millisecond
	retryTimeout = 3 * time.Second
)

// shortStride: under -short, every k8s scenario runs but only every
// shortStride-th scenario (in name order) of the other suites.
const shortStride = 4

// TestConformanceInLab runs the conformance corpus on a real 2-node lab
// with real agents: for each scenario step, the agents get the step's
// objects, and every probe the step's Expectation covers is measured and
// compared with what compiler/sim predicts for the same objects.
func TestConformanceInLab(t *testing.T) {
	requireRoot(t)
	for _, suite := range []string{"k8s", "cnp", "tabby"} {
		t.Run(suite, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(corpusDir, suite, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var scenarios []string
			for _, f := range files {
				if !strings.HasPrefix(filepath.Base(f), "_") {
					scenarios = append(scenarios, f)
				}
			}
			sort.Strings(scenarios)
			if testing.Short() && suite != "k8s" {
				var sub []string
				for i, f := range scenarios {
					if i%shortStride == 0 {
						sub = append(sub, f)
					}
				}
				scenarios = sub
			}
			topo, err := policy.LoadFiles(filepath.Join(corpusDir, suite, "_topology.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			l := upLab(t, lab.Config{Objects: topo, Nodes: 2, Name: "tlab-conf-" + suite})
			steps := 0
			var tm stepTimes
			for _, f := range scenarios {
				sc, err := scenario.Load(f)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				for _, step := range sc.Steps {
					steps++
					if err := checkStepInLab(l, step, &tm); err != nil {
						t.Errorf("%s: step %q:\n%v", filepath.Base(f), step.Name, err)
					}
				}
			}
			t.Logf("%s: %d scenarios, %d steps, %d probes in %v (waiting for the agents %v, measuring %v)",
				suite, len(scenarios), steps, tm.probes, time.Since(start).Round(time.Millisecond),
				tm.sync.Round(time.Millisecond), tm.measure.Round(time.Millisecond))
		})
	}
}

// stepTimes add up where a suite's time goes.
type stepTimes struct {
	sync, measure time.Duration
	probes        int
}

// checkStepInLab applies one step and compares measured with predicted on
// the probes of the step's Expectation.
func checkStepInLab(l *lab.Lab, step scenario.Step, tm *stepTimes) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if err := l.UpdateManifests(step.Objects); err != nil {
		return err
	}
	if err := l.WaitSynced(ctx); err != nil {
		return err
	}
	tm.sync += time.Since(start)
	predicted, err := predict(l.Objects())
	if err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	covered := map[string]bool{}
	for _, pe := range step.Expectation.Probes {
		proto, err := scenario.ParseProtocol(pe.Protocol)
		if err != nil {
			return err
		}
		covered[fmt.Sprintf("%d/%s", pe.Port, proto)] = true
	}
	var want []sim.Result
	for _, r := range predicted.Results {
		if covered[fmt.Sprintf("%d/%s", r.Port, r.Protocol)] {
			want = append(want, r)
		}
	}
	start = time.Now()
	defer func() { tm.measure += time.Since(start); tm.probes += len(want) }()
	return compareMeasured(ctx, l, want)
}

// predict is `tabbyctl policy matrix` on objs.
func predict(objs []policy.Object) (*sim.Matrix, error) {
	m, errs := policy.Normalize(objs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("normalise: %v", errs)
	}
	s, err := sim.New(m)
	if err != nil {
		return nil, err
	}
	return s.Matrix()
}

// compareMeasured measures want's probes and reports every difference
// that survives a re-measurement with the long timeout.
func compareMeasured(ctx context.Context, l *lab.Lab, want []sim.Result) error {
	probes := make([]sim.Probe, len(want))
	for i, r := range want {
		probes[i] = r.Probe
	}
	got, err := l.Measure(ctx, probes, lab.ProbeOptions{Timeout: firstTimeout})
	if err != nil {
		return err
	}
	var again []sim.Probe
	var againWant []bool
	for i, m := range got {
		if m.Reached != want[i].Allowed {
			again = append(again, m.Probe)
			againWant = append(againWant, want[i].Allowed)
		}
	}
	if len(again) == 0 {
		return nil
	}
	got, err = l.Measure(ctx, again, lab.ProbeOptions{Timeout: retryTimeout})
	if err != nil {
		return err
	}
	var diffs []string
	for i, m := range got {
		if m.Reached != againWant[i] {
			diffs = append(diffs, fmt.Sprintf("  %s -> %s %d/%s (%s -> %s): predicted %s, measured %s",
				m.From, m.To, m.Port, m.Protocol, m.Src, m.Dst, verdict(againWant[i]), measured(m)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d probes differ from the prediction:\n%s", len(diffs), len(want), strings.Join(diffs, "\n"))
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

func measured(m lab.Measurement) string {
	if m.Reached {
		return fmt.Sprintf("allowed (rtt %v)", m.RTT.Round(time.Microsecond))
	}
	return "denied (" + string(m.Failure) + ")"
}
