package compiler

import (
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// The targets: a full compile of the default synthetic cluster (10,000 pods,
// 2,000 policies, 110 local pods) in <= 300 ms with <= 150 MiB peak heap; an
// incremental update + Flush in <= 1 ms median.

var benchModel = sync.OnceValue(func() *policy.Model { return synth.Generate(synth.Default()) })

var benchOpts = Options{Node: "node-1"}

func BenchmarkFullCompile(b *testing.B) {
	m := benchModel()
	peak := peakHeap(func() {
		if _, err := Compile(m, benchOpts); err != nil {
			b.Fatal(err)
		}
	})
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	n := 0
	for b.Loop() {
		if _, err := Compile(m, benchOpts); err != nil {
			b.Fatal(err)
		}
		n++
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(elapsed.Microseconds())/1000/float64(n), "ms/compile")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(n)/(1<<20), "MiB-alloc/compile")
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-heap")
}

// peakHeap runs f while sampling the heap (model included) every 200µs and
// returns the largest heap seen.
func peakHeap(f func()) uint64 {
	runtime.GC()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			peak = max(peak, samples[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak
}

// loadedEngine is an engine holding the whole default cluster, flushed.
func loadedEngine(b *testing.B) (*Engine, *policy.Model) {
	b.Helper()
	m := benchModel()
	e := NewEngine(benchOpts)
	e.SetTiers(m.Tiers)
	for _, p := range m.Policies {
		e.UpsertPolicy(p)
	}
	for _, ep := range m.Endpoints {
		e.UpsertEndpoint(ep)
	}
	for _, ns := range m.NetworkSets {
		e.UpsertNetworkSet(ns)
	}
	e.Flush()
	return e, m
}

// timed runs step b.N times, timing each call, and reports the median and
// 99th percentile. after, if not nil, runs untimed after each step.
func timed(b *testing.B, step, after func(i int)) {
	var ds []time.Duration
	i := 0
	for b.Loop() {
		t := time.Now()
		step(i)
		ds = append(ds, time.Since(t))
		if after != nil {
			b.StopTimer()
			after(i)
			b.StartTimer()
		}
		i++
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, "µs-p50")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds())/1e3, "µs-p99")
}

func BenchmarkIncrementalPodLabelChange(b *testing.B) {
	e, m := loadedEngine(b)
	// Half local, half remote pods; each change moves a pod to another app
	// of its namespace (membership and, for local pods, governance change)
	// and the next change of the same pod moves it back.
	var local, remote []policy.Endpoint
	for _, ep := range m.Endpoints {
		if ep.Node == benchOpts.Node {
			local = append(local, ep)
		} else if len(remote) < 200 {
			remote = append(remote, ep)
		}
	}
	pods := append(local[:min(100, len(local))], remote[:100]...)
	apps := appsByNamespace(m)
	moved := make([]bool, len(pods))
	timed(b, func(i int) {
		k := i % len(pods)
		ep := pods[k]
		if !moved[k] {
			labels := maps.Clone(ep.Labels)
			labels["app"] = otherApp(apps[ep.Ref.Namespace], labels["app"])
			ep.Labels = labels
		}
		moved[k] = !moved[k]
		e.UpsertEndpoint(ep)
		e.Flush()
	}, nil)
}

func appsByNamespace(m *policy.Model) map[string][]string {
	apps := map[string][]string{}
	for _, ep := range m.Endpoints {
		a := ep.Labels["app"]
		if !slices.Contains(apps[ep.Ref.Namespace], a) {
			apps[ep.Ref.Namespace] = append(apps[ep.Ref.Namespace], a)
		}
	}
	return apps
}

func otherApp(apps []string, cur string) string {
	for _, a := range apps {
		if a != cur {
			return a
		}
	}
	return cur + "-x"
}

func BenchmarkIncrementalPolicyChange(b *testing.B) {
	e, m := loadedEngine(b)
	// Policies whose chains are in the table, so each change re-renders one.
	var active []policy.Policy
	for _, p := range m.Policies {
		if e.chains[PolicyChainName(p.Ref, policy.Ingress)] != nil && len(p.IngressRules) > 0 {
			active = append(active, p)
		}
	}
	if len(active) == 0 {
		b.Fatal("no active policy")
	}
	timed(b, func(i int) {
		p := active[i%len(active)]
		if (i/len(active))%2 == 0 {
			// Add a port to the first rule: one chain changes.
			rules := slices.Clone(p.IngressRules)
			rules[0].Destination.Ports = append(slices.Clone(rules[0].Destination.Ports), policy.PortRange{First: 7000 + uint16(i%100), Last: 7000 + uint16(i%100)})
			p.IngressRules = rules
		}
		e.UpsertPolicy(p)
		e.Flush()
	}, nil)
}

func BenchmarkIncrementalPodAdd(b *testing.B) {
	e, m := loadedEngine(b)
	// New pods in existing namespaces, every tenth on the local node, with
	// fresh addresses outside the generator's blocks. Each is deleted again
	// (untimed), so the cluster stays the size of the default one.
	newRef := func(i int) policy.Ref {
		return policy.Ref{Kind: policy.KindPod, Namespace: m.Endpoints[(i*7919)%len(m.Endpoints)].Ref.Namespace, Name: fmt.Sprintf("new-%d", i)}
	}
	timed(b, func(i int) {
		src := m.Endpoints[(i*7919)%len(m.Endpoints)]
		ep := src
		ep.Ref.Name = fmt.Sprintf("new-%d", i)
		ep.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 250 + byte(i>>16), byte(i >> 8), byte(i)})}
		ep.Node = "node-99"
		if i%10 == 0 {
			ep.Node = benchOpts.Node
		}
		e.UpsertEndpoint(ep)
		e.Flush()
	}, func(i int) {
		e.DeleteEndpoint(newRef(i))
		e.Flush()
	})
}
