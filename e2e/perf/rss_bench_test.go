package perf

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// BenchmarkAgentRSS starts the real agent (cmd/tabby) as node-1 in a fresh
// network namespace on a manifest directory holding e2e/synth's default
// cluster rendered to objects (500 Namespaces, their ServiceAccounts,
// 10,000 Pods, 2,000 NetworkPolicies of synth's shapes; ~110 pods are on
// node-1 and have no interface, so they stay pending) and reports, once
// /readyz answers 200: MiB-VmRSS, MiB-VmHWM and ms-to-ready (from exec).
func BenchmarkAgentRSS(b *testing.B) {
	bin := requireRoot(b)
	cfg := synth.Default()
	objs, nss := RenderModel(synth.Generate(cfg))
	objs = append(objs, GeneratePolicies(nss, cfg.Policies, cfg.Seed)...)
	sortObjects(objs)
	data, err := policy.Encode(objs)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("manifests: %d objects, %.1f MiB", len(objs), float64(len(data))/(1<<20))

	var rss, hwm, ready float64
	b.ResetTimer()
	for range b.N {
		r, h, d, err := runAgentOnce(b, filepath.Join(bin, "tabby"), dir)
		if err != nil {
			b.Fatal(err)
		}
		rss, hwm, ready = r, h, Ms(d)
	}
	b.StopTimer()
	b.ReportMetric(rss, "MiB-VmRSS")
	b.ReportMetric(hwm, "MiB-VmHWM")
	b.ReportMetric(ready, "ms-to-ready")
}

// runAgentOnce runs one agent in its own namespace until ready and returns
// its memory and its time to ready; the agent and namespace are removed.
func runAgentOnce(b *testing.B, tabby, manifests string) (rss, hwm float64, ready time.Duration, err error) {
	ns := fmt.Sprintf("tabby-perf-rss-%d", os.Getpid())
	_ = exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return 0, 0, 0, fmt.Errorf("ip netns add: %w: %s", err, out)
	}
	defer func() {
		if out, derr := exec.Command("ip", "netns", "del", ns).CombinedOutput(); derr != nil {
			b.Errorf("ip netns del %s: %v: %s", ns, derr, out)
		}
	}()
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return 0, 0, 0, fmt.Errorf("lo up: %w: %s", err, out)
	}
	logf, err := os.Create(filepath.Join(b.TempDir(), "agent.log"))
	if err != nil {
		return 0, 0, 0, err
	}
	defer logf.Close()
	const addr = "127.0.0.1:9099"
	// ip netns exec execs the agent: the PID is the agent's.
	cmd := exec.Command("ip", "netns", "exec", ns, tabby, "agent", "--node", "node-1",
		"--manifests", manifests, "--health-addr", addr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, fmt.Errorf("starting the agent: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	hc := newHealthClient("/run/netns/"+ns, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		code, _, err := hc.get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			ready = time.Since(start)
			break
		}
		if ctx.Err() != nil {
			return 0, 0, 0, fmt.Errorf("agent not ready after 2m (log %s)", logf.Name())
		}
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"); st == nil {
			return 0, 0, 0, fmt.Errorf("agent exited (log %s)", logf.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
	rss, hwm, err = procStatusMiB(cmd.Process.Pid)
	if err != nil {
		return 0, 0, 0, err
	}
	st, err := hc.status(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	if len(st.Errors) > 0 {
		return 0, 0, 0, fmt.Errorf("agent reports errors: %v", st.Errors[:min(3, len(st.Errors))])
	}
	return rss, hwm, ready, nil
}
