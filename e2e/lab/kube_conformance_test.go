package lab_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

// TestKubernetesConformanceInLab is TestConformanceInLab through a real API
// server: one 2-node Kubernetes-mode lab per suite, shared by the suite's
// scenarios as in the standalone test; every step's objects are written
// through the API (server-side apply, deletes, pods created and given their
// status by the lab's kubelet), the agents read them with deploy's RBAC,
// and every probe of the step's Expectation is measured and compared with
// compiler/sim's prediction for what the API server holds. The prediction
// must also equal the one for the objects as written: the API server
// (defaults, CRD schemas) may not change what a policy means.
func TestKubernetesConformanceInLab(t *testing.T) {
	requireRoot(t)
	kubetest.RequireBinaries(t)
	for _, suite := range []string{"k8s", "cnp", "tabby"} {
		t.Run(suite, func(t *testing.T) {
			scenarios := corpusScenarios(t, suite)
			topo, err := policy.LoadFiles(filepath.Join(corpusDir, suite, "_topology.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			l := upLab(t, lab.Config{Objects: topo, Nodes: 2, Name: "tlab-kconf-" + suite, Kubernetes: true})
			steps := 0
			var tm kubeStepTimes
			for _, f := range scenarios {
				sc, err := scenario.Load(f)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				for _, step := range sc.Steps {
					steps++
					if err := checkStepThroughAPI(l, step, &tm); err != nil {
						t.Errorf("%s: step %q:\n%v", filepath.Base(f), step.Name, err)
					}
				}
			}
			t.Logf("%s: %d scenarios, %d steps, %d probes in %v (writing %v, waiting for the agents %v, reading back and predicting %v meanwhile, measuring %v)",
				suite, len(scenarios), steps, tm.probes, time.Since(start).Round(time.Millisecond),
				tm.write.Round(time.Millisecond), tm.sync.Round(time.Millisecond),
				tm.read.Round(time.Millisecond), tm.measure.Round(time.Millisecond))
		})
	}
}

// corpusScenarios lists a suite's scenario files in name order; under
// -short, as in TestConformanceInLab, every k8s scenario but only every
// shortStride-th of the other suites.
func corpusScenarios(t *testing.T, suite string) []string {
	t.Helper()
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
	if len(scenarios) == 0 {
		t.Fatalf("no scenarios in %s", filepath.Join(corpusDir, suite))
	}
	return scenarios
}

// kubeStepTimes add up where a suite's time goes.
type kubeStepTimes struct {
	write, sync, read, measure time.Duration
	probes                     int
}

// checkStepThroughAPI writes one step through the API, waits for every
// agent, and compares measured with predicted on the probes of the step's
// Expectation.
func checkStepThroughAPI(l *lab.Lab, step scenario.Step, tm *kubeStepTimes) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if err := l.UpdateManifestsContext(ctx, step.Objects); err != nil {
		return err
	}
	tm.write += time.Since(start)
	// What the API holds is settled once the writes returned: it is read
	// back and predicted while the agents catch up.
	type prediction struct {
		fromAPI, written *sim.Matrix
		took             time.Duration
		err              error
	}
	predicted := make(chan prediction, 1)
	objs := l.Objects()
	go func() {
		start := time.Now()
		var p prediction
		var fromAPI []policy.Object
		if fromAPI, p.err = l.APIObjects(ctx); p.err == nil {
			if p.fromAPI, p.err = predict(fromAPI); p.err != nil {
				p.err = fmt.Errorf("predict from the API: %w", p.err)
			} else if p.written, p.err = predict(objs); p.err != nil {
				p.err = fmt.Errorf("predict from the objects written: %w", p.err)
			}
		}
		p.took = time.Since(start)
		predicted <- p
	}()
	start = time.Now()
	syncErr := l.WaitSynced(ctx)
	tm.sync += time.Since(start)
	p := <-predicted
	tm.read += p.took
	if err := errors.Join(syncErr, p.err); err != nil {
		return err
	}
	if !reflect.DeepEqual(p.fromAPI.Results, p.written.Results) {
		return fmt.Errorf("the API server changed the prediction:\n%s", resultDiff(p.written, p.fromAPI))
	}
	want := coveredResults(p.fromAPI, step)
	if len(want) == 0 {
		return fmt.Errorf("the step's expectation covers no probe of the prediction")
	}
	start = time.Now()
	defer func() { tm.measure += time.Since(start); tm.probes += len(want) }()
	return compareMeasured(ctx, l, want)
}

// coveredResults are the results of m on the ports and protocols the
// step's Expectation probes.
func coveredResults(m *sim.Matrix, step scenario.Step) []sim.Result {
	covered := map[string]bool{}
	for _, pe := range step.Expectation.Probes {
		proto, err := scenario.ParseProtocol(pe.Protocol)
		if err != nil {
			continue // scenario.Load validated them
		}
		covered[fmt.Sprintf("%d/%s", pe.Port, proto)] = true
	}
	var want []sim.Result
	for _, r := range m.Results {
		if covered[fmt.Sprintf("%d/%s", r.Port, r.Protocol)] {
			want = append(want, r)
		}
	}
	return want
}

// resultDiff lists the probes whose verdict differs between a and b
// (same probe list: same pods and ports).
func resultDiff(a, b *sim.Matrix) string {
	if len(a.Results) != len(b.Results) {
		return fmt.Sprintf("  %d probes vs %d", len(a.Results), len(b.Results))
	}
	var out []string
	for i, r := range a.Results {
		if o := b.Results[i]; o.Probe != r.Probe || o.Allowed != r.Allowed {
			out = append(out, fmt.Sprintf("  %s -> %s %d/%s: written %s, API %s", r.From, r.To, r.Port, r.Protocol,
				verdict(r.Allowed), verdict(o.Allowed)))
		}
	}
	return strings.Join(out, "\n")
}
