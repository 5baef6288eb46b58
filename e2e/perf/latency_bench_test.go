package perf

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/probe"
	"github.com/tabbynet/tabby/policy"
)

const (
	latencyChanges = 100
	// probeEvery is how often a new probe starts while a change is being
	// enforced: the resolution of the probe-observed latency.
	probeEvery   = 2 * time.Millisecond
	probeTimeout = 50 * time.Millisecond
)

// probeSample is one probe of the flapping pair.
type probeSample struct {
	start   time.Time
	reached bool
}

// BenchmarkChangeToEnforced flips a NetworkPolicy between a version that
// allows x/a -> y/a:80 and one that does not, latencyChanges times, in a
// 2-node lab, and measures each change from the rename of the manifest
// file to:
//
//   - the end of the Sync that applied it, as the destination node's agent
//     reports it (/status lastSync, same clock): ms-p50, ms-p99;
//   - the start of the first probe from which on every probe sees the new
//     verdict (probes start every probeEvery): probe-ms-p50, probe-ms-p99;
//   - "once the file is seen": from the agent's receipt of the inotify
//     event (/status lastChangeSeen) to the end of that Sync: seen-ms-p50,
//     seen-ms-p99 (the target: p99 <= 10 ms). The difference from
//     ms-* is the kernel's inotify delivery and the scheduling of the
//     agent's goroutines on a machine that is also running the probes;
//   - the agent's own work for the batch (compile + nftables transaction,
//     from /status): batch-ms-p50, batch-ms-p99.
//
// Every change is confirmed enforced: after the reported sync a probe
// must see the new verdict.
func BenchmarkChangeToEnforced(b *testing.B) {
	objs := []policy.Object{
		nsObject("x", nil), nsObject("y", nil),
		labPod("x", "a", "client", lab.NodeName(1)), labPod("x", "b", "other", lab.NodeName(1)),
		labPod("y", "a", "server", lab.NodeName(2)),
		allowFrom("y", "flip", "server", "x", "client", 80),
	}
	l := upLab(b, "tabby-perf-lat", lab.Config{Objects: objs, Nodes: 2})
	st := l.State()
	var srcNetns, dstNode string
	var dst netip.Addr
	for _, p := range st.Pods {
		switch p.Namespace + "/" + p.Name {
		case "x/a":
			srcNetns = "/run/netns/" + p.Netns
		case "y/a":
			dst, dstNode = p.IPs[0], p.Node
		}
	}
	var nodeNetns, healthAddr string
	for _, nd := range st.Nodes {
		if nd.Name == dstNode {
			nodeNetns, healthAddr = "/run/netns/"+nd.Netns, nd.HealthAddr
		}
	}
	hc := newHealthClient(nodeNetns, healthAddr)

	// The two versions of the file: the lab's placed objects with the
	// policy allowing x/a (version 0) or only x/b (version 1).
	placed := l.Objects()
	sortObjects(placed)
	var files [2][]byte
	for v, from := range []string{"client", "other"} {
		cur := slices.Clone(placed)
		for i := range cur {
			if cur[i].Ref.Kind == policy.KindK8sNetworkPolicy && cur[i].Ref.Name == "flip" {
				cur[i] = allowFrom("y", "flip", "server", "x", from, 80)
			}
		}
		data, err := policy.Encode(cur)
		if err != nil {
			b.Fatal(err)
		}
		files[v] = data
	}

	ctx := context.Background()
	if res, err := probe.Probe(ctx, srcNetns, dst, 80, probe.TCP, time.Second); err != nil || !res.Reached {
		b.Fatalf("before any change x/a -> y/a:80 must be allowed: %+v %v", res, err)
	}
	var syncLat, seenLat, probeLat, batchLat []time.Duration
	b.ResetTimer()
	for range b.N {
		for i := range latencyChanges {
			version := 1 - i%2 // 1 (deny) first: the lab started with 0
			want := version == 0
			m, err := oneChange(ctx, st.Manifests, files[version], hc, srcNetns, dst, want)
			if err != nil {
				b.Fatalf("change %d: %v", i, err)
			}
			syncLat, seenLat = append(syncLat, m.sync), append(seenLat, m.seen)
			probeLat, batchLat = append(probeLat, m.probe), append(batchLat, m.batch)
		}
	}
	b.StopTimer()
	b.ReportMetric(Ms(Percentile(syncLat, 0.5)), "ms-p50")
	b.ReportMetric(Ms(Percentile(syncLat, 0.99)), "ms-p99")
	b.ReportMetric(Ms(Percentile(seenLat, 0.5)), "seen-ms-p50")
	b.ReportMetric(Ms(Percentile(seenLat, 0.99)), "seen-ms-p99")
	b.ReportMetric(Ms(Percentile(probeLat, 0.5)), "probe-ms-p50")
	b.ReportMetric(Ms(Percentile(probeLat, 0.99)), "probe-ms-p99")
	b.ReportMetric(Ms(Percentile(batchLat, 0.5)), "batch-ms-p50")
	b.ReportMetric(Ms(Percentile(batchLat, 0.99)), "batch-ms-p99")
}

// changeLatency is what oneChange measures (see BenchmarkChangeToEnforced).
type changeLatency struct {
	sync  time.Duration // rename -> end of the Sync
	seen  time.Duration // inotify event received -> end of the Sync
	probe time.Duration // rename -> first probe from which on all see the new verdict
	batch time.Duration // compile + Sync
}

// oneChange renames data into place and measures until the change is
// enforced (see BenchmarkChangeToEnforced).
func oneChange(ctx context.Context, path string, data []byte, hc *healthClient, srcNetns string,
	dst netip.Addr, want bool) (m changeLatency, err error) {
	before, err := hc.status(ctx)
	if err != nil {
		return m, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var (
		mu      sync.Mutex
		samples []probeSample
		perr    error
		wg      sync.WaitGroup
	)
	t0, err := writeRenamed(path, data)
	if err != nil {
		return m, err
	}
	wg.Go(func() {
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			start := time.Now()
			wg.Go(func() {
				res, err := probe.Probe(ctx, srcNetns, dst, 80, probe.TCP, probeTimeout)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && perr == nil && ctx.Err() == nil {
					perr = err
				}
				if err == nil {
					samples = append(samples, probeSample{start, res.Reached})
				}
			})
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	// The reported sync: a Sync that started after the rename ended.
	var st *agentStatus
	for {
		st, err = hc.status(ctx)
		if err != nil {
			return m, err
		}
		if st.Syncs > before.Syncs && st.LastSync.After(t0) {
			break
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("no sync after the change: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	if st.LastSyncError != "" || len(st.Errors) > 0 {
		return m, fmt.Errorf("agent reports %q %v", st.LastSyncError, st.Errors)
	}
	compile, sync := st.durations()
	// Confirmation: a probe started now must see the new verdict, and the
	// probes keep running until one after it has also seen it.
	res, err := probe.Probe(ctx, srcNetns, dst, 80, probe.TCP, 5*probeTimeout)
	if err != nil {
		return m, err
	}
	if res.Reached != want {
		return m, fmt.Errorf("synced at %v but a probe is still %s", st.LastSync, verdict(res.Reached))
	}
	confirmed := time.Now()
	for {
		mu.Lock()
		n := 0
		for _, s := range samples {
			if s.start.After(confirmed) {
				n++
			}
		}
		mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(probeEvery):
		}
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close
	if perr != nil {
		return m, perr
	}
	slices.SortFunc(samples, func(a, b probeSample) int { return a.start.Compare(b.start) })
	// The first sample from which on every sample sees the new verdict.
	first := len(samples)
	for i := len(samples) - 1; i >= 0 && samples[i].reached == want; i-- {
		first = i
	}
	if first == len(samples) {
		return m, fmt.Errorf("no probe saw the new verdict (%s)", verdict(want))
	}
	if st.LastChangeSeen.Before(t0) || st.LastChangeSeen.After(st.LastSync) {
		return m, fmt.Errorf("lastChangeSeen %v is not between the rename %v and the sync %v",
			st.LastChangeSeen, t0, st.LastSync)
	}
	return changeLatency{sync: st.LastSync.Sub(t0), seen: st.LastSync.Sub(st.LastChangeSeen),
		probe: max(samples[first].start.Sub(t0), 0), batch: compile + sync}, nil
}

func verdict(reached bool) string {
	if reached {
		return "allowed"
	}
	return "denied"
}
