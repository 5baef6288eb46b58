package perf

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/probe"
	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

const (
	iperfPort    = 5201
	iperfSeconds = 3
)

// policyCounts are the NetworkPolicy counts BenchmarkThroughput loads.
var policyCounts = []int{0, 100, 1000, 2000}

// BenchmarkThroughput measures iperf3 TCP throughput from x/client on
// node-1 to y/server on node-2 with 0, 100, 1000 and 2000 NetworkPolicies
// loaded. A tenth of each count (at most 200) are policies of the pair's
// own pods (ingress on the server, egress on the client; two of them allow
// the pair), the rest synth-shaped policies over 100 other namespaces, as
// in a real cluster where most policies select other pods. Reports
// Gbit/s-<n> and ratio-<n> (to 0 policies).
//
// The lab has only the pair's pods, so the policies of other namespaces
// select no endpoint: their cost is in the ruleset's size and dispatch,
// not in set contents.
func BenchmarkThroughput(b *testing.B) {
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		b.Skip("iperf3 is not installed (apt-get install iperf3): throughput not measured")
	}
	// Namespaces of the synthetic cluster: labels and apps, no pods (every
	// lab pod is a real namespace with a server).
	_, nss := RenderModel(synth.Generate(synth.Config{Seed: 7, Namespaces: 101, Pods: 101, Policies: 0,
		Node: "node-1", PodsPerNode: 110}))
	base := []policy.Object{
		nsObject("x", map[string]string{"team": "payments", "env": "prod"}),
		nsObject("y", map[string]string{"team": "search", "env": "prod"}),
		labPod("x", "client", "client", lab.NodeName(1)),
		labPod("y", "server", "server", lab.NodeName(2)),
	}
	for _, ns := range nss {
		base = append(base, nsObject(ns.Name, ns.Labels))
	}
	l := upLab(b, "tabby-perf-tput", lab.Config{Objects: base, Nodes: 2})
	st := l.State()
	var clientNetns, serverNetns string
	var server netip.Addr
	for _, p := range st.Pods {
		switch p.Namespace {
		case "x":
			clientNetns = p.Netns
		case "y":
			serverNetns, server = p.Netns, p.IPs[0]
		}
	}
	srv := exec.Command("ip", "netns", "exec", serverNetns, iperf, "-s", "-p", strconv.Itoa(iperfPort))
	if err := srv.Start(); err != nil {
		b.Fatalf("iperf3 server: %v", err)
	}
	b.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	ctx := context.Background()
	if err := waitListening(ctx, "/run/netns/"+clientNetns, server, iperfPort); err != nil {
		b.Fatal(err)
	}

	gbps := map[int]float64{}
	b.ResetTimer()
	for range b.N {
		for _, n := range policyCounts {
			pair := min(n/10, 200)
			if n > 0 {
				pair = max(pair, 2)
			}
			objs := append(append(append([]policy.Object(nil), base...), pairPolicies(pair, iperfPort)...),
				GeneratePolicies(nss, n-pair, uint64(n))...)
			b.StopTimer()
			if err := l.UpdateManifests(objs); err != nil {
				b.Fatal(err)
			}
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := l.WaitSynced(sctx)
			cancel()
			if err != nil {
				b.Fatalf("%d policies: %v", n, err)
			}
			b.StartTimer()
			g, err := runIperf(ctx, iperf, clientNetns, server)
			if err != nil {
				b.Fatalf("%d policies: %v", n, err)
			}
			gbps[n] = g
			b.Logf("%d policies: %.2f Gbit/s", n, g)
		}
	}
	b.StopTimer()
	for _, n := range policyCounts {
		b.ReportMetric(gbps[n], fmt.Sprintf("Gbit/s-%d", n))
		if n > 0 && gbps[0] > 0 {
			b.ReportMetric(gbps[n]/gbps[0], fmt.Sprintf("ratio-%d", n))
		}
	}
}

// waitListening waits for a TCP listener at dst:port, probing from netns.
func waitListening(ctx context.Context, netns string, dst netip.Addr, port uint16) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := probe.Probe(ctx, netns, dst, port, probe.TCP, 200*time.Millisecond)
		if err != nil {
			return err
		}
		if res.Reached {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server at %s:%d not listening: %v", dst, port, res.Failure)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runIperf runs one iperf3 client for iperfSeconds and returns the
// receiver's throughput in Gbit/s.
func runIperf(ctx context.Context, iperf, netns string, dst netip.Addr) (float64, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netns, iperf, "-c", dst.String(),
		"-p", strconv.Itoa(iperfPort), "-t", strconv.Itoa(iperfSeconds), "-J")
	out, err := cmd.Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return 0, fmt.Errorf("iperf3: %w (%w): %s", jerr, err, strings.TrimSpace(string(out)))
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3: %w", err)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}
