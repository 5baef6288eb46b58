package enforcer

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/kerneltest"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// Targets: the full program of the default synthetic cluster (10,000 pods,
// 2,000 policies; node-1's table has ~1,400 chains, ~11,000 rules, ~16,000
// set elements) into a fresh namespace in <= 0.5 s.

var benchModel = sync.OnceValue(func() *policy.Model { return synth.Generate(synth.Default()) })

var benchOpts = compiler.Options{Node: "node-1"}

// BenchmarkFullProgram times the first Sync of the default cluster's table
// into a fresh namespace (namespace creation untimed).
func BenchmarkFullProgram(b *testing.B) {
	tab, err := compiler.Compile(benchModel(), benchOpts)
	if err != nil {
		b.Fatal(err)
	}
	var total, kernel time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		ns := newNetns(b)
		e := newEnforcer(b, ns, nil)
		b.StartTimer()
		start := time.Now()
		if err := e.Sync(tab); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		n++
		b.StopTimer()
		s := e.Stats()
		b.ReportMetric(float64(s.LastMessages), "messages")
		b.ReportMetric(float64(s.LastBytes)/(1<<20), "MiB")
		kernel += s.LastKernel
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/program")
	b.ReportMetric(float64(kernel.Microseconds())/1000/float64(n), "ms-kernel/program")
}

// BenchmarkIncrementalSync times one pod label change end to end: engine
// update, Flush and Sync of the resulting delta (one transaction). Local and
// remote pods alternate; each change of a pod moves it to another app of its
// namespace and the next change of that pod moves it back.
func BenchmarkIncrementalSync(b *testing.B) {
	m := benchModel()
	eng := loadEngine(m, benchOpts)
	ns := newNetns(b)
	var txs int
	e := newEnforcer(b, ns, &txs)
	if err := e.Sync(eng.Table()); err != nil {
		b.Fatal(err)
	}
	apps := map[string][]string{}
	for _, ep := range m.Endpoints {
		if a := ep.Labels["app"]; !slices.Contains(apps[ep.Ref.Namespace], a) {
			apps[ep.Ref.Namespace] = append(apps[ep.Ref.Namespace], a)
		}
	}
	var local, remote []policy.Endpoint
	for _, ep := range m.Endpoints {
		switch {
		case ep.Node == benchOpts.Node && len(local) < 100:
			local = append(local, ep)
		case ep.Node != benchOpts.Node && len(remote) < 100:
			remote = append(remote, ep)
		}
	}
	var pods []policy.Endpoint
	for i := range min(len(local), len(remote)) {
		pods = append(pods, local[i], remote[i])
	}
	moved := make([]bool, len(pods))
	var ds, dsTx []time.Duration // all changes; those that changed the table
	i := 0
	txs = 0
	for b.Loop() {
		k := i % len(pods)
		ep := pods[k]
		if !moved[k] {
			ep.Labels = maps.Clone(ep.Labels)
			for _, a := range apps[ep.Ref.Namespace] {
				if a != ep.Labels["app"] {
					ep.Labels["app"] = a
					break
				}
			}
		}
		moved[k] = !moved[k]
		before := txs
		start := time.Now()
		eng.UpsertEndpoint(ep)
		eng.Flush()
		if err := e.Sync(eng.Table()); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		ds = append(ds, d)
		if txs != before {
			dsTx = append(dsTx, d)
		}
		i++
	}
	b.StopTimer()
	if e.Stats().FullSyncs != 1 {
		b.Errorf("%d full syncs", e.Stats().FullSyncs)
	}
	slices.Sort(ds)
	slices.Sort(dsTx)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "µs-p50")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "µs-p99")
	if len(dsTx) > 0 {
		b.ReportMetric(float64(dsTx[len(dsTx)/2].Microseconds()), "µs-p50-tx")
		b.ReportMetric(float64(dsTx[len(dsTx)*99/100].Microseconds()), "µs-p99-tx")
	}
	b.ReportMetric(float64(txs)/float64(i), "tx/op")
	checkKernelQuiet(b, ns, eng.Table())
}

// checkKernelQuiet is checkKernel with a short failure message (the default
// cluster's listing is megabytes).
func checkKernelQuiet(t testing.TB, n netns, tab *ir.Table) {
	t.Helper()
	if normaliseBlocks(n.listing(t, tab.Name)) != normaliseBlocks(kerneltest.NormaliseElements(tab.String())) {
		t.Error("kernel listing differs from the table")
	}
}
