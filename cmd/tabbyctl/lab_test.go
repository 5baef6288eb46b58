package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/controlplane"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/e2e/lab"
)

// labManifests: pods without addresses (the lab assigns them), one pinned
// to node-2, TCP/UDP/SCTP ports, and a policy, so the matrix has both
// verdicts.
const labManifests = `apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: z}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}, {containerPort: 9000, protocol: SCTP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec:
  nodeName: node-2
  containers: [{name: c, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: z, labels: {app: c}}
spec:
  containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 80}, {port: 9000, protocol: SCTP}]}]
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLabBadInput: bad input exits 2 before anything is built (no root
// needed), runtime problems exit 1.
func TestLabBadInput(t *testing.T) {
	good := writeFile(t, "lab.yaml", labManifests)
	badNode := writeFile(t, "bad.yaml", strings.Replace(labManifests, "nodeName: node-2", "nodeName: worker-7", 1))
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"lab"}, 2, "missing subcommand"},
		{[]string{"lab", "launch"}, 2, `unknown subcommand "launch"`},
		{[]string{"lab", "up", "--nodes", "2"}, 2, "-f FILE is required"},
		{[]string{"lab", "up", "-f", good}, 2, "--nodes N"},
		{[]string{"lab", "up", "-f", good, "--nodes", "0"}, 2, "--nodes N"},
		{[]string{"lab", "up", "-f", good, "--nodes", "2", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"lab", "up", "-f", badNode, "--nodes", "2", "--state-dir", empty}, 2, `spec.nodeName "worker-7" is not a lab node`},
		{[]string{"lab", "up", "-f", badNode, "--nodes", "3", "--state-dir", empty, "--name", "Bad"}, 2, `name "Bad"`},
		{[]string{"lab", "up", "-f", filepath.Join(empty, "missing.yaml"), "--nodes", "1", "--state-dir", empty}, 2, "missing.yaml"},
		{[]string{"lab", "probe", "-o", "yaml"}, 2, `-o "yaml"`},
		{[]string{"lab", "probe", "--timeout", "0s"}, 2, "--timeout"},
		{[]string{"lab", "probe", "--state-dir", empty}, 1, "no lab in " + empty},
		{[]string{"lab", "serve", "--banner", "x/a"}, 2, "--netns, --banner and at least one --port"},
		{[]string{"lab", "serve", "--netns", "/x", "--banner", "x/a", "--port", "80/ICMP"}, 2, "80/ICMP"},
		{[]string{"lab", "up", "-f", good, "--nodes", "2", "--deploy", good}, 2, "--deploy needs --kubernetes"},
		{[]string{"lab", "up", "-f", good, "--nodes", "2", "--state-dir", empty, "--kubernetes", "--deploy", filepath.Join(empty, "nope.yaml"), "--tabby", "/bin/true"}, 2, "nope.yaml"},
		{[]string{"lab", "forward", "--listen", "0.0.0.0:0", "--netns", "/x", "--to", "10.0.0.1:1"}, 2, "want a loopback address"},
		{[]string{"lab", "forward", "--to", "10.0.0.1:1"}, 2, "--listen, --netns and --to are required"},
	} {
		code, _, stderr := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("tabbyctl %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(lab.StateFile(empty)); !os.IsNotExist(err) {
		t.Errorf("bad input left a state file: %v", err)
	}
}

// TestLabCLI runs the real commands as a user would: lab up, probe (the
// same JSON as policy matrix), up again over a running lab, down twice.
func TestLabCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, nftables, raw sockets")
	}
	cli := labBinaries(t)
	state := t.TempDir()
	const name = "tlab-cli"
	t.Cleanup(func() {
		if _, err := cli("lab", "down", "--state-dir", state, "--name", name); err != nil {
			t.Errorf("cleanup: lab down: %v", err)
		}
	})
	manifests := writeFile(t, "lab.yaml", labManifests)
	up := []string{"lab", "up", "-f", manifests, "--nodes", "2", "--state-dir", state, "--name", name}
	out, err := cli(up...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"x/a  node-1  10.244.1.10", "x/b  node-2", "z/c  node-2  10.244.2.11", "lab up in"} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}
	first, err := lab.Open(state)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	measured, err := cli("lab", "probe", "--state-dir", state, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	code, predicted, stderr := runCLI("policy", "matrix", "-f", manifests, "-o", "json")
	if code != 0 {
		t.Fatalf("policy matrix: %s", stderr)
	}
	if measured != predicted {
		t.Errorf("lab probe differs from policy matrix:\n--- lab probe\n%s--- policy matrix\n%s", measured, predicted)
	}
	allowed := strings.Count(predicted, `"allowed":true`)
	if n := strings.Count(predicted, "\n"); allowed == 0 || allowed == n {
		t.Errorf("the matrix has %d of %d allowed: it does not test both verdicts", allowed, n)
	}
	for _, l := range strings.Split(strings.TrimSpace(measured), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("lab probe line %q: %v", l, err)
		}
	}
	t.Logf("lab probe: %d probes in %v", strings.Count(measured, "\n"), took.Round(time.Millisecond))
	if table, err := cli("lab", "probe", "--state-dir", state); err != nil || !strings.Contains(table, "80/TCP  (") {
		t.Errorf("lab probe -o table: %v\n%s", err, table)
	}

	// lab up over a running lab replaces it: the old processes are gone.
	if _, err := cli(up...); err != nil {
		t.Fatal(err)
	}
	old := procsOf(first.State())
	if len(old) != 2+3 {
		t.Errorf("the first lab recorded %d processes, want 2 agents + 3 servers", len(old))
	}
	for _, p := range old {
		if startTime(p.PID) == p.StartTime {
			t.Errorf("process %d (%s) of the replaced lab still runs", p.PID, strings.Join(p.Args, " "))
		}
	}

	for range 2 { // idempotent
		if _, err := cli("lab", "down", "--state-dir", state); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			t.Errorf("lab down left namespace %s", e.Name())
		}
	}
	if _, err := cli("lab", "probe", "--state-dir", state); err == nil {
		t.Error("lab probe after lab down succeeded")
	}
}

func procsOf(st lab.State) []lab.Proc {
	var out []lab.Proc
	for _, n := range st.Nodes {
		if n.Agent != nil {
			out = append(out, *n.Agent)
		}
	}
	for _, p := range st.Pods {
		if p.Server != nil {
			out = append(out, *p.Server)
		}
	}
	return out
}

// startTime is field 22 of /proc/<pid>/stat, 0 when the process is gone
// or a zombie.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 20 || f[0] == "Z" {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// labBinaries builds tabby and tabbyctl and returns a runner of the built
// tabbyctl (stdout; stderr goes to the test log on failure).
func labBinaries(t *testing.T) func(args ...string) (string, error) {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"github.com/tabbynet/tabby/cmd/tabby", "github.com/tabbynet/tabby/cmd/tabbyctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tabbyctl := filepath.Join(bin, "tabbyctl")
	return func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		cmd := exec.Command(tabbyctl, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			t.Logf("tabbyctl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), err
	}
}

// TestLabKubernetesCLI runs Kubernetes mode as a user would: lab up
// --kubernetes, kubectl on the host through the printed kubeconfig, lab
// probe (the same JSON as policy matrix), a policy deleted with kubectl and
// restored by lab apply, lab down (nothing left: namespaces, control plane,
// forwarder, its port).
func TestLabKubernetesCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, nftables, raw sockets")
	}
	bins := kubetest.RequireBinaries(t)
	cli := labBinaries(t)
	state := t.TempDir()
	const name = "tlab-kcli"
	t.Cleanup(func() {
		if _, err := cli("lab", "down", "--state-dir", state, "--name", name); err != nil {
			t.Errorf("cleanup: lab down: %v", err)
		}
	})
	manifests := writeFile(t, "lab.yaml", labManifests)
	start := time.Now()
	out, err := cli("lab", "up", "--kubernetes", "-f", manifests, "--nodes", "2", "--state-dir", state, "--name", name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab up --kubernetes in %v", time.Since(start).Round(time.Millisecond))
	kubeconfig := filepath.Join(state, "kube", "admin.kubeconfig")
	for _, want := range []string{"x/a  node-1  10.244.1.10", "z/c  node-2  10.244.2.11",
		"API server https://192.168.254.2:6443 in netns " + name + "-cp", "kubectl --kubeconfig " + kubeconfig} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}
	l, err := lab.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	cp, err := controlplane.Open(st.Kubernetes.Dir)
	if err != nil {
		t.Fatal(err)
	}
	procs := cp.Processes()
	if len(procs) != 2 || st.Kubernetes.Forwarder == nil {
		t.Fatalf("control plane %+v, forwarder %+v", procs, st.Kubernetes.Forwarder)
	}
	procs = append(procs, controlplane.Process{Name: "forwarder", PID: st.Kubernetes.Forwarder.PID,
		StartTime: st.Kubernetes.Forwarder.StartTime})

	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(bins.Kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	got, err := kubectl("get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}={.status.podIP},{.status.phase};{end}`)
	if want := "x/a=10.244.1.10,Running;x/b=10.244.2.10,Running;z/c=10.244.2.11,Running;"; err != nil || got != want {
		t.Errorf("kubectl get pods from the host = %q, %v; want %q", got, err, want)
	}

	measured, err := cli("lab", "probe", "--state-dir", state, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	code, predicted, stderr := runCLI("policy", "matrix", "-f", manifests, "-o", "json")
	if code != 0 {
		t.Fatalf("policy matrix: %s", stderr)
	}
	if measured != predicted {
		t.Errorf("lab probe differs from policy matrix:\n--- lab probe\n%s--- policy matrix\n%s", measured, predicted)
	}
	if allowed := strings.Count(predicted, `"allowed":true`); allowed == 0 || allowed == strings.Count(predicted, "\n") {
		t.Errorf("the matrix has %d allowed: it does not test both verdicts", allowed)
	}

	// kubectl deletes the policy: everything is open; lab apply of the
	// same file puts it back and waits for the agents.
	if out, err := kubectl("delete", "networkpolicy", "-n", "x", "a-from-b"); err != nil {
		t.Fatalf("kubectl delete: %v: %s", err, out)
	}
	var open string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if open, err = cli("lab", "probe", "--state-dir", state, "-o", "json"); err == nil && !strings.Contains(open, `"allowed":false`) {
			break
		}
	}
	if strings.Contains(open, `"allowed":false`) {
		t.Errorf("after kubectl deleted the only policy some probes are still denied:\n%s", open)
	}
	if out, err := cli("lab", "apply", "-f", manifests, "--state-dir", state); err != nil || !strings.Contains(out, "every agent enforced it") {
		t.Fatalf("lab apply: %v: %s", err, out)
	}
	if out, err := kubectl("get", "networkpolicy", "-n", "x", "a-from-b", "-o", "name"); err != nil || strings.TrimSpace(out) != "networkpolicy.networking.k8s.io/a-from-b" {
		t.Errorf("lab apply did not restore the policy: %v: %s", err, out)
	}
	if again, err := cli("lab", "probe", "--state-dir", state, "-o", "json"); err != nil || again != predicted {
		t.Errorf("after lab apply the matrix differs from policy matrix (%v):\n%s", err, again)
	}

	if _, err := cli("lab", "down", "--state-dir", state); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.Alive() {
			t.Errorf("%s (pid %d) survived lab down", p.Name, p.PID)
		}
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			t.Errorf("lab down left namespace %s", e.Name())
		}
	}
	if c, err := net.DialTimeout("tcp", st.Kubernetes.ForwardAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("the forwarder's %s still accepts connections", st.Kubernetes.ForwardAddr)
	}
	if _, err := os.Stat(st.Kubernetes.Dir); !os.IsNotExist(err) {
		t.Errorf("lab down left %s", st.Kubernetes.Dir)
	}
}
