package controlplane

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tabbynet/tabby/networking"
)

// binaries returns the control-plane executables or skips (fails under CI).
func binaries(t *testing.T) Binaries {
	t.Helper()
	b, err := FindBinaries(BinDir())
	if err == nil {
		return b
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %v", err)
	}
	t.Skipf("skipping: %v", err)
	return Binaries{}
}

func TestFindBinaries(t *testing.T) {
	dir := t.TempDir()
	_, err := FindBinaries(dir)
	var me *MissingBinariesError
	if !errors.As(err, &me) {
		t.Fatalf("FindBinaries(empty dir) = %v, want *MissingBinariesError", err)
	}
	if want := []string{"kube-apiserver", "etcd", "kubectl"}; !slices.Equal(me.Missing, want) {
		t.Errorf("Missing = %v, want %v", me.Missing, want)
	}
	if !strings.Contains(err.Error(), "make kube-tools") {
		t.Errorf("error %q does not tell how to get the binaries", err)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Present but not executable counts as missing: exec would fail later
	// with a far less helpful message.
	if err := os.WriteFile(filepath.Join(dir, "kubectl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = FindBinaries(dir)
	if !errors.As(err, &me) || !slices.Equal(me.Missing, []string{"kubectl"}) {
		t.Fatalf("FindBinaries(no executable kubectl) = %v, want kubectl missing", err)
	}
	if err := os.Chmod(filepath.Join(dir, "kubectl"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := FindBinaries(dir)
	if err != nil {
		t.Fatalf("FindBinaries(complete dir): %v", err)
	}
	if b.APIServer != filepath.Join(dir, "kube-apiserver") || b.Kubectl != filepath.Join(dir, "kubectl") {
		t.Errorf("paths = %+v", b)
	}
}

func TestBinDir(t *testing.T) {
	t.Setenv("TABBY_KUBE_BIN", "")
	t.Setenv("TABBY_CACHE", "/cache")
	if got, want := BinDir(), "/cache/kube/"+KubeVersion+"/bin"; got != want {
		t.Errorf("BinDir with TABBY_CACHE = %q, want %q", got, want)
	}
	t.Setenv("TABBY_KUBE_BIN", "/opt/kube")
	if got := BinDir(); got != "/opt/kube" {
		t.Errorf("BinDir with TABBY_KUBE_BIN = %q, want /opt/kube", got)
	}
}

func TestPKI(t *testing.T) {
	p, err := newPKI()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caPEM) {
		t.Fatal("CA PEM does not parse")
	}
	serving, err := p.serving(net.ParseIP("10.96.0.1"), net.ParseIP("192.168.254.2"))
	if err != nil {
		t.Fatal(err)
	}
	sc := parseCert(t, serving.CertPEM)
	for _, name := range []string{"127.0.0.1", "localhost", "kubernetes.default.svc", "10.96.0.1", "192.168.254.2"} {
		if _, err := sc.Verify(x509.VerifyOptions{DNSName: name, Roots: roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate not valid for %s: %v", name, err)
		}
	}
	if _, err := sc.Verify(x509.VerifyOptions{DNSName: "192.168.254.3", Roots: roots}); err == nil {
		t.Error("serving certificate valid for an address it was not issued for")
	}
	client, err := p.client("alice", "devs", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cc := parseCert(t, client.CertPEM)
	if _, err := cc.Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify for client auth: %v", err)
	}
	if cc.Subject.CommonName != "alice" || !slices.Equal(cc.Subject.Organization, []string{"devs", "system:masters"}) {
		t.Errorf("client subject = %v, want CN=alice O=[devs system:masters]", cc.Subject)
	}
	if _, err := cc.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate must not be usable as a serving certificate")
	}

	// What another process loads signs certificates the same CA verifies.
	dir := t.TempDir()
	caKey, err := ecKeyPEM(p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(dir, map[string][]byte{caCertFile: p.caPEM, caKeyFile: caKey}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, caKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	loaded, err := loadPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := loaded.client("bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCert(t, bob.CertPEM).Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate signed by the loaded CA: %v", err)
	}
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSweepStaleDataDirs(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"tabby-kubetest-dead": dead.Process.Pid, "tabby-kubetest-live": os.Getpid()} {
		d := filepath.Join(parent, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// No owner file: possibly being created by another process right now,
	// or a detached control plane's.
	if err := os.Mkdir(filepath.Join(parent, "tabby-kubetest-new"), 0o755); err != nil {
		t.Fatal(err)
	}
	sweepStaleDataDirs(parent)
	for name, want := range map[string]bool{"tabby-kubetest-dead": false, "tabby-kubetest-live": true, "tabby-kubetest-new": true} {
		_, err := os.Stat(filepath.Join(parent, name))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	if _, err := Launch(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "Dir is required") {
		t.Errorf("Launch without Dir = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := Launch(context.Background(), Options{Dir: missing}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Launch with a missing Dir = %v", err)
	}
	var me *MissingBinariesError
	_, err := Launch(context.Background(), Options{Dir: t.TempDir(), Binaries: &Binaries{Dir: "/x", APIServer: "/x/kube-apiserver"}})
	if err == nil || errors.As(err, &me) {
		t.Errorf("Launch with bogus binaries = %v, want an exec error", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open of a directory without a state file succeeded")
	}
}

// helperEnv makes the test binary act as a launcher that exits right after
// Launch (see TestDetachedOutlivesLauncher).
const helperEnv = "TABBY_CONTROLPLANE_HELPER_DIR"

// TestHelperLaunch is not a test: run with helperEnv set, it launches a
// detached control plane into that directory and exits without stopping it.
func TestHelperLaunch(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	c, err := Launch(context.Background(), Options{Dir: dir, Detached: true})
	if err != nil {
		fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
		os.Exit(1)
	}
	fmt.Println("URL", c.URL)
	os.Exit(0) // no cleanup of any kind, as after a `tabbyctl lab up` that returned
}

// TestDetachedOutlivesLauncher launches a detached control plane from a
// child process that then exits, and drives it from here through Open:
// the apiserver keeps serving, restarts, and Stop leaves nothing behind.
func TestDetachedOutlivesLauncher(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperLaunch$", "-test.v=false")
	helper.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := helper.Output()
	t.Cleanup(func() {
		if c, err := Open(dir); err == nil {
			_ = c.Stop()
		}
	})
	if err != nil {
		t.Fatalf("launcher: %v\n%s", err, out)
	}
	var url string
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		if u, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
			url = u
		}
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != url || url == "" {
		t.Fatalf("Open: URL %q, the launcher printed %q", c.URL, url)
	}
	procs := c.Processes()
	if len(procs) != 2 || procs[0].Name != "etcd" || procs[1].Name != "kube-apiserver" {
		t.Fatalf("processes after the launcher exited: %+v", procs)
	}
	for _, p := range procs {
		if sid, err := unix.Getsid(p.PID); err != nil || sid != p.PID {
			t.Errorf("%s (pid %d) session %d (%v): want a session of its own", p.Name, p.PID, sid, err)
		}
		if ppid := parentOf(t, p.PID); ppid == helper.Process.Pid {
			t.Errorf("%s still a child of the exited launcher", p.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A second Open (a third process, say) restarts the apiserver.
	other, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if alive(procs[1]) {
		t.Error("kube-apiserver alive after StopAPIServer")
	}
	if !alive(procs[0]) {
		t.Error("etcd died with the apiserver")
	}
	if err := other.StopAPIServer(); err == nil {
		t.Error("StopAPIServer twice succeeded")
	}
	if err := other.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace after the restart, first client: %v", err)
	}
	// The restart is recorded: a fresh Open sees the new apiserver.
	third, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ps := third.Processes(); len(ps) != 2 || ps[1].PID == procs[1].PID {
		t.Errorf("processes after the restart: %+v (old apiserver %d)", ps, procs[1].PID)
	}
	if err := third.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(procs, other.Processes()...) {
		if alive(p) {
			t.Errorf("%s (pid %d) alive after Stop", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(c.State().DataDir); !os.IsNotExist(err) {
		t.Errorf("etcd data %s after Stop: %v", c.State().DataDir, err)
	}
	last, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := last.StartAPIServer(); !errors.Is(err, ErrStopped) {
		t.Errorf("StartAPIServer after Stop = %v, want ErrStopped", err)
	}
	if err := last.Stop(); err != nil {
		t.Errorf("Stop twice: %v", err)
	}
}

func alive(p Process) bool { return p.Alive() }

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestInNetns runs an attached control plane inside a network namespace
// bound to an address that exists only there: its processes live in the
// namespace, the admin client reaches it from this (root-namespace) test
// process, a kubeconfig works from inside the namespace, and the death
// signal still holds.
func TestInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	bins := binaries(t)
	name := fmt.Sprintf("tcp-test-%d", os.Getpid())
	ns, err := networking.NewNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(); _ = ns.Delete() })
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair wholly inside the namespace (the dummy module may be
	// missing) carries the bind address.
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "d0"}, PeerName: "d1"}
	if err := h.LinkAdd(dummy); err != nil {
		t.Fatal(err)
	}
	bind := netip.MustParseAddr("192.0.2.10") // TEST-NET-1: nothing outside the namespace has it
	for _, l := range []netlink.Link{lo, dummy} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.AddrAdd(dummy, &netlink.Addr{IPNet: &net.IPNet{IP: bind.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Launch(ctx, Options{Dir: t.TempDir(), Netns: ns.Path(), BindAddress: bind, Port: 6443})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	if c.URL != "https://192.0.2.10:6443" {
		t.Errorf("URL %s", c.URL)
	}
	want := inode(t, ns.Path())
	for _, p := range c.Processes() {
		if got := inode(t, fmt.Sprintf("/proc/%d/ns/net", p.PID)); got != want {
			t.Errorf("%s runs in netns inode %d, want the namespace's %d", p.Name, got, want)
		}
		if pgid, _ := syscall.Getpgid(p.PID); pgid != p.PID {
			t.Errorf("%s: process group %d, want its own", p.Name, pgid)
		}
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("admin client from the root namespace: %v", err)
	}
	// The same address from this namespace is nothing.
	if conn, err := net.DialTimeout("tcp", "192.0.2.10:6443", 300*time.Millisecond); err == nil {
		conn.Close()
		t.Error("the apiserver is reachable outside its namespace")
	}
	// A kubeconfig for an RBAC-less user, used from inside the namespace.
	kc := filepath.Join(c.Dir, "user.kubeconfig")
	if err := c.WriteKubeconfig(kc, "", "carol", "devs"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", name, bins.Kubectl, "--kubeconfig", kc,
		"auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "carol [") || !strings.Contains(string(out), "devs") {
		t.Errorf("kubectl auth whoami in the namespace = %q, %v", out, err)
	}
	cfg, err := c.UserConfig("carol", "devs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("carol may list pods: is authorization RBAC?")
	}
	begin := time.Now()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("launch %v (etcd %v); apiserver restart in the namespace %v", c.StartupTime.Round(time.Millisecond),
		c.EtcdStartup.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("admin client after the restart: %v", err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
