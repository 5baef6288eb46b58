package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/networking"
)

// capBits are the capability numbers (linux/capability.h) of the names a
// DaemonSet may add, as far as this test needs them.
var capBits = map[corev1.Capability]uint{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
	"SYS_MODULE": 16, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "BPF": 39, "PERFMON": 38,
}

// capsScript runs, inside fresh network and mount namespaces (unshare), as
// the container runtime would set the agent up: lo up; a pod interface with
// a host route to the pod's IP, as any CNI leaves it; the root filesystem
// read-only (readOnlyRootFilesystem), checked by a write that must fail;
// then, through setpriv, exactly the bounding set $1 (for root, also the
// permitted and effective sets after execve), nothing inheritable or
// ambient, and no_new_privs (allowPrivilegeEscalation: false). runc does
// the same: it sets the bounding, permitted and effective sets to the
// container's capabilities and leaves inheritable and ambient empty.
const capsScript = `set -eu
bounding="$1" probe="$2"; shift 2
ip link set lo up
ip link add tabbytest0 type veth peer name tabbytest1
ip link set tabbytest0 up
ip link set tabbytest1 up
ip route add 10.9.0.5/32 dev tabbytest0
# Per-mount read-only flags, in this mount namespace only; /proc, /dev and
# /sys stay mounted as in a container. The test's directory may be on a
# file system of its own (TMPDIR): that one too.
mount -o remount,bind,ro /
probe_mnt="$(stat -c %m "$(dirname "$probe")")"
[ "$probe_mnt" = / ] || mount -o remount,bind,ro "$probe_mnt"
if touch "$probe" 2>/dev/null; then echo "the file system is writable" >&2; exit 1; fi
exec setpriv --no-new-privs --inh-caps=-all --ambient-caps=-all --bounding-set="$bounding" -- "$@"
`

// The node the manifests put their one pod on, with the address routed to
// tabbytest0 above.
const capsManifests = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: web, image: web}]}
status: {podIP: 10.9.0.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: shop}
spec: {podSelector: {}}
`

// TestAgentCapabilities runs the real agent the way the DaemonSet's
// securityContext runs it, in network and mount namespaces it creates (the
// kernel discards both when the agent exits): root with exactly the added
// capabilities of the rendered DaemonSet, no_new_privs, a read-only root
// filesystem, the ConfigMap's settings in its environment and NODE_NAME.
// Only the datastore differs: a manifest directory, since the namespace
// cannot reach an API server. The kernel side (nf_tables over netlink,
// route lookups for interface discovery, the health server) is the same in
// both modes. With those capabilities the agent must program its table
// with the pod's interface and become ready, and the DaemonSet's exec probes
// (run with the container's environment) must pass; without NET_ADMIN the
// kernel must refuse it, which shows the first run proves something, and
// only the liveness probe may pass.
func TestAgentCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network and mount namespaces, capabilities")
	}
	for _, tool := range []string{"unshare", "setpriv", "nsenter", "mount", "stat", "ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			if inCI() {
				t.Fatalf("CI is set and %s is missing: %v", tool, err)
			}
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	objs := readManifest(t, manifestPath)
	ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", agentName)
	cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "tabby-config")
	c := ds.Spec.Template.Spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		t.Fatal("the DaemonSet's container has no capabilities")
	}
	bounding := []string{"-all"}
	var wantEff uint64
	for _, name := range c.SecurityContext.Capabilities.Add {
		bit, ok := capBits[name]
		if !ok {
			t.Fatalf("capability %s: not in this test's table", name)
		}
		bounding = append(bounding, "+"+strings.ToLower(string(name)))
		wantEff |= 1 << bit
	}

	tabby := tabbyBinary(t)
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(manifests, "pods.yaml"), []byte(capsManifests), 0o644); err != nil {
		t.Fatal(err)
	}
	// The container's environment: the ConfigMap (envFrom) and NODE_NAME;
	// PATH for setpriv and the shell.
	env := []string{"PATH=" + os.Getenv("PATH"), "NODE_NAME=node-1"}
	for k, v := range cm.Data {
		env = append(env, k+"="+v)
	}
	// The DaemonSet's command, with the standalone datastore instead of
	// the API server on the command line (which wins over the environment);
	// no TabbyNode without an API server.
	args := append(append([]string{tabby}, c.Command[1:]...), "--datastore=manifests", "--manifests", manifests, "--node-status=false")
	healthAddr := cm.Data["TABBY_HEALTH_ADDR"]
	if healthAddr == "" {
		healthAddr = "127.0.0.1:9099"
	}
	// probe runs one of the DaemonSet's exec probes the way the kubelet
	// does: in the container (here: its network namespace) with its
	// environment. It reports whether the probe passed.
	probe := func(t *testing.T, a *confined, p *corev1.Probe) bool {
		t.Helper()
		if p == nil || p.Exec == nil || len(p.Exec.Command) == 0 || p.Exec.Command[0] != "tabby" {
			t.Fatalf("probe %+v: want exec tabby ...", p)
		}
		cmd := exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", a.cmd.Process.Pid), "--", tabby}, p.Exec.Command[1:]...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("probe %q: %v\n%s", p.Exec.Command, err, out)
		}
		return err == nil
	}

	t.Run("DaemonSet capabilities", func(t *testing.T) {
		a := startConfined(t, strings.Join(bounding, ","), filepath.Join(dir, "probe-1"), env, args)
		st := a.waitStatus(t, healthAddr, func(s agentStatus) bool { return s.Ready })
		if st.LastSyncError != "" {
			t.Errorf("ready, but last sync error %q", st.LastSyncError)
		}
		if !probe(t, a, c.LivenessProbe) || !probe(t, a, c.ReadinessProbe) {
			t.Errorf("ready agent: liveness probe passed %v, readiness probe passed %v; want both",
				probe(t, a, c.LivenessProbe), probe(t, a, c.ReadinessProbe))
		}
		// The process really holds what the DaemonSet grants, and no more.
		proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for field, want := range map[string]uint64{"CapEff": wantEff, "CapPrm": wantEff, "CapBnd": wantEff, "CapInh": 0, "CapAmb": 0, "NoNewPrivs": 1} {
			m := regexp.MustCompile(`(?m)^` + field + `:\s*([0-9a-f]+)$`).FindSubmatch(proc)
			base := 16
			if field == "NoNewPrivs" {
				base = 10
			}
			if m == nil {
				t.Errorf("/proc/<agent>/status has no %s", field)
				continue
			}
			if got, err := strconv.ParseUint(string(m[1]), base, 64); err != nil || got != want {
				t.Errorf("agent %s = %s, want %x", field, m[1], want)
			}
		}
		// The table is there, and the pod's interface was found from the
		// route to its address.
		out, err := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", a.cmd.Process.Pid), "nft", "list", "table", "inet", "tabby").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table inet tabby: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`"tabbytest0" : (jump|goto) `).Match(out) {
			t.Errorf("the table does not dispatch the pod's interface tabbytest0:\n%s", out)
		}
	})

	t.Run("without NET_ADMIN", func(t *testing.T) {
		a := startConfined(t, "-all", filepath.Join(dir, "probe-2"), env, args)
		st := a.waitStatus(t, healthAddr, func(s agentStatus) bool { return s.LastSyncError != "" })
		if st.Ready || !strings.Contains(st.LastSyncError, "operation not permitted") {
			t.Errorf("without capabilities: ready %v, last sync error %q; want not ready, operation not permitted", st.Ready, st.LastSyncError)
		}
		// Alive (it retries), not ready: the pod stays out of rotation
		// without being restarted in a loop.
		if live, ready := probe(t, a, c.LivenessProbe), probe(t, a, c.ReadinessProbe); !live || ready {
			t.Errorf("agent that cannot program: liveness probe passed %v, readiness probe passed %v; want true, false", live, ready)
		}
	})
}

// confined is an agent started by startConfined.
type confined struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

func startConfined(t *testing.T, bounding, probe string, env, args []string) *confined {
	t.Helper()
	cmd := exec.Command("unshare", append([]string{"--net", "--mount", "--propagation", "private", "--",
		"sh", "-c", capsScript, "sh", bounding, probe}, args...)...)
	cmd.Env = env
	a := &confined{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = a.stderr, a.stderr
	// Killed with the test binary if that dies (a go test timeout runs no
	// cleanups): the namespaces go with it. The kernel sends the signal
	// when the *thread* that forked the child ends, so the child is started
	// from a goroutine that keeps its thread locked until the child is gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		a.done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-a.done
			t.Errorf("the agent did not stop within 10 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", a.stderr)
		}
	})
	return a
}

// agentStatus is the part of the agent's /status this test reads.
type agentStatus struct {
	Ready         bool   `json:"ready"`
	LastSyncError string `json:"lastSyncError"`
}

// waitStatus polls /status inside the agent's network namespace until done
// holds, for at most 20 s.
func (a *confined) waitStatus(t *testing.T, addr string, done func(agentStatus) bool) agentStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-a.done:
			a.done <- err
			t.Fatalf("the agent exited: %v", err)
		default:
		}
		st, err := statusIn(a.cmd.Process.Pid, addr)
		if err == nil && done(st) {
			return st
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the agent's /status did not get there in 20 s (last error: %v)", last)
	return agentStatus{}
}

// statusIn GETs /status from addr inside the network namespace of pid: the
// socket is created on a thread in that namespace, then used from here.
func statusIn(pid int, addr string) (agentStatus, error) {
	ns, err := networking.OpenNetns(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return agentStatus{}, err
	}
	defer ns.Close()
	var conn net.Conn
	if err := ns.Do(func() error {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	}); err != nil {
		return agentStatus{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /status HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return agentStatus{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return agentStatus{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return agentStatus{}, fmt.Errorf("/status: %s", resp.Status)
	}
	var st agentStatus
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
