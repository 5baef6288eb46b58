package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/kerneltest"

	"github.com/vishvananda/netns"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/policy"
)

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "missing command"},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"agent", "--manifests", dir}, 2, "--node is required"},
		{[]string{"agent", "--node", "n1", "--datastore", "manifests"}, 2, "--manifests is required"},
		{[]string{"agent", "--node", "n1", "--manifests", filepath.Join(dir, "missing")}, 2, "not a readable directory"},
		{[]string{"agent", "--node", "n1", "--manifests", dir, "--log-format", "xml"}, 2, "--log-format"},
		{[]string{"agent", "--node", "n1", "--manifests", dir, "--interface-discovery", "arp"}, 2, "--interface-discovery"},
		{[]string{"agent", "--node", "n1", "--manifests", dir, "--log-level", "loud"}, 2, "--log-level"},
		// The kubernetes datastore (the default) without a cluster or a kubeconfig.
		{[]string{"agent", "--node", "n1"}, 2, "not running in a cluster"},
		{[]string{"agent", "--node", "n1", "--kubeconfig", filepath.Join(dir, "missing")}, 2, "kubeconfig " + filepath.Join(dir, "missing")},
		{[]string{"agent", "--node", "N_1", "--kubeconfig", writeKubeconfig(t, "https://127.0.0.1:1")}, 2, "node name"},
		{[]string{"version", "x"}, 2, "unexpected argument"},
		{[]string{"help"}, 0, ""},
		{[]string{"agent", "-h"}, 0, ""},
		{[]string{"health", "-h"}, 0, ""},
	} {
		var stdout, stderr bytes.Buffer
		clearAgentEnv(t)
		if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("tabby %q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
}

const pods = `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: x}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c, image: x}]}
status: {podIP: 10.0.0.2}
`

func netpol(name string, port int) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: %s, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: %d}]}]
`, name, port)
}

func chainOf(name string) string {
	return compiler.PolicyChainName(policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "shop", Name: name}, policy.Ingress)
}

// buildBinary builds cmd/tabby into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tabby")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// throwawayNetns creates a network namespace deleted when the test ends.
func throwawayNetns(t *testing.T) string {
	t.Helper()
	return kerneltest.NewNetns(t, "tabby-agent")
}

// ipns runs ip(8), inside ns unless ns is "".
func ipns(t *testing.T, ns string, args ...string) {
	t.Helper()
	if ns != "" {
		args = append([]string{"netns", "exec", ns, "ip"}, args...)
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func nftTable(t *testing.T, ns string) (string, error) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "tabby").CombinedOutput()
	return string(out), err
}

// nsClient is an HTTP client whose connections are opened inside the
// namespace, where the agent's health endpoint listens.
func nsClient(t *testing.T, ns string) *http.Client {
	t.Helper()
	target, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = target.Close() })
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		// The socket is created in the namespace of the calling thread:
		// switch this (locked) thread there only for the dial.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return nil, err
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			return nil, err
		}
		defer func() { _ = netns.Set(orig) }()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentBinaryInNetns runs the real binary, with the real enforcer and
// route discovery, inside a throwaway network namespace.
func TestAgentBinaryInNetns(t *testing.T) {
	ns := throwawayNetns(t)
	bin := buildBinary(t)
	ipns(t, ns, "link", "set", "lo", "up")
	// The local pod's host-side interface and its route, as a CNI would.
	ipns(t, ns, "link", "add", "veth-web", "type", "veth", "peer", "name", "veth-web-p")
	ipns(t, ns, "link", "set", "veth-web", "up")
	ipns(t, ns, "route", "add", "10.0.0.1/32", "dev", "veth-web")

	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pods.yaml", pods)
	write("allow.yaml", netpol("allow-client", 80))

	addr := "127.0.0.1:19099"
	var logs bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "agent", "--node", "n1", "--manifests", dir,
		"--health-addr", addr, "--log-format", "text", "--reconcile-interval", "500ms")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
	}()

	client := nsClient(t, ns)
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "/readyz", 20*time.Second, func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d %s", code, body)
	}
	table, err := nftTable(t, ns)
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, table)
	}
	for _, want := range []string{chainOf("allow-client"), `"veth-web"`, "10.0.0.2"} {
		if !strings.Contains(table, want) {
			t.Fatalf("kernel table lacks %q:\n%s", want, table)
		}
	}

	// A new file is enforced; a broken one is reported and changes nothing.
	write("more.yaml", netpol("allow-more", 8080))
	waitFor(t, "the new policy in the kernel", 10*time.Second, func() bool {
		table, _ := nftTable(t, ns)
		return strings.Contains(table, chainOf("allow-more"))
	})
	write("allow.yaml", strings.Replace(netpol("allow-client", 81), "ingress:", "ingres:", 1))
	var st agent.Status
	waitFor(t, "the broken file in /status", 10*time.Second, func() bool {
		_, body := get("/status")
		st = agent.Status{}
		_ = json.Unmarshal([]byte(body), &st)
		all := strings.Join(st.Errors, "\n")
		return strings.Contains(all, "allow.yaml (document 1)") && strings.Contains(all, "spec.ingres")
	})
	if st.Policies != 2 || st.LocalEndpoints != 1 || !st.Ready {
		t.Fatalf("/status %+v: want 2 policies, 1 local endpoint, ready", st)
	}
	// Drift: someone deletes a chain's rules; the reconcile repairs it.
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", "tabby", chainOf("allow-more")).CombinedOutput(); err != nil {
		t.Fatalf("nft flush chain: %v: %s", err, out)
	}
	waitFor(t, "the drift repaired", 10*time.Second, func() bool {
		_, body := get("/status")
		st = agent.Status{}
		_ = json.Unmarshal([]byte(body), &st)
		return st.Repairs > 0
	})

	// SIGTERM: a clean exit, and the table stays enforced.
	before, _ := nftTable(t, ns)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop after SIGTERM")
	}
	after, err := nftTable(t, ns)
	if err != nil {
		t.Fatalf("table gone after SIGTERM: %v: %s", err, after)
	}
	if after != before || !strings.Contains(after, chainOf("allow-client")) {
		t.Fatalf("table changed on shutdown:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if !strings.Contains(logs.String(), "table stays in place") {
		t.Fatalf("no shutdown message in the logs:\n%s", logs.String())
	}
}
