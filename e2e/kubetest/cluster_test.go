package kubetest

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// FindBinaries and BinDir forward to e2e/controlplane, whose tests cover them.

// TestCluster drives one real cluster through the operations Tabby's
// Kubernetes mode depends on. The subtests share the cluster and run in order.
func TestCluster(t *testing.T) {
	c := Start(t)
	t.Logf("cluster ready: etcd %v, kube-apiserver %v, total %v", c.EtcdStartup.Round(time.Millisecond),
		c.APIServerStartup.Round(time.Millisecond), c.StartupTime.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "tabby-e2e"

	t.Run("version", func(t *testing.T) {
		v, err := c.Client.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != KubeVersion {
			t.Errorf("server version %q, want %q", v.GitVersion, KubeVersion)
		}
	})

	var listRV string
	t.Run("create and list", func(t *testing.T) {
		_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": "net"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, testPod("web-0"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		nsl, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "team=net"})
		if err != nil {
			t.Fatal(err)
		}
		if len(nsl.Items) != 1 || nsl.Items[0].Name != ns {
			t.Errorf("namespaces with team=net: %v", names(nsl.Items))
		}
		pl, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pl.Items) != 1 || pl.Items[0].Name != "web-0" || pl.Items[0].Labels["app"] != "web" {
			t.Fatalf("pods: %+v", pl.Items)
		}
		listRV = pl.ResourceVersion
	})

	t.Run("status update is watched", func(t *testing.T) {
		w, err := c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: listRV})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		setPodIP(ctx, t, c.Client, ns, "web-0", "10.244.1.5")
		ev := nextEvent(t, w.ResultChan(), 20*time.Second)
		pod, ok := ev.Object.(*corev1.Pod)
		if ev.Type != watch.Modified || !ok || pod.Status.PodIP != "10.244.1.5" {
			t.Fatalf("event %s %T, want MODIFIED pod with podIP 10.244.1.5", ev.Type, ev.Object)
		}
	})

	t.Run("kubectl with the kubeconfig", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, c.Binaries.Kubectl, "--kubeconfig", c.Kubeconfig,
			"get", "pods", "-n", ns, "-o", "jsonpath={.items[*].status.podIP}").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl: %v: %s", err, out)
		}
		if string(out) != "10.244.1.5" {
			t.Errorf("kubectl saw podIPs %q, want 10.244.1.5", out)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		cfg, err := c.UserConfig("nobody", "tabby:testers")
		if err != nil {
			t.Fatal(err)
		}
		cs := kubernetes.NewForConfigOrDie(cfg)
		_, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("unprivileged list: %v, want Forbidden (is authorization RBAC?)", err)
		}
		path, err := c.UserKubeconfig("root-ish", "system:masters")
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, c.Binaries.Kubectl, "--kubeconfig", path,
			"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
		if err != nil || string(out) != "root-ish" {
			t.Errorf("kubectl auth whoami = %q, %v; want root-ish", out, err)
		}
	})

	t.Run("apiserver restart", func(t *testing.T) { testRestart(ctx, t, c, ns) })
}

// testRestart kills the apiserver under a running watch and informer, brings
// it back on the same port, and checks that the data survived and that the
// informer resumed without being recreated.
func testRestart(ctx context.Context, t *testing.T, c *Cluster, ns string) {
	added := make(chan string, 16)
	inf := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(c.Client.CoreV1().RESTClient(), "pods", ns, fields.Everything()),
		&corev1.Pod{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { added <- obj.(*corev1.Pod).Name },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go inf.Run(stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if got := <-added; got != "web-0" {
		t.Fatalf("informer's first pod %q, want web-0", got)
	}
	w, err := c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if c.APIServerRunning() {
		t.Error("APIServerRunning after StopAPIServer")
	}
	// A watch on a dead server must end (clients rely on that to re-list).
	drainUntilClosed(t, w.ResultChan(), 20*time.Second)
	shortCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = c.Client.CoreV1().Pods(ns).Get(shortCtx, "web-0", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("Get succeeded while the apiserver was stopped")
	}

	begin := time.Now()
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver restarted and ready in %v", time.Since(begin).Round(time.Millisecond))
	if !c.APIServerRunning() {
		t.Error("APIServerRunning false after StartAPIServer")
	}

	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Get after restart with the same clientset: %v", err)
	}
	if pod.Status.PodIP != "10.244.1.5" {
		t.Errorf("podIP after restart %q, want 10.244.1.5 (state lost?)", pod.Status.PodIP)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace after restart: %v", err)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, testPod("web-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// client-go's reflector backs off up to ~30 s between retries against a
	// dead server; a minute covers that on a loaded machine.
	deadline := time.After(60 * time.Second)
	for {
		select {
		case name := <-added:
			if name == "web-1" {
				return
			}
		case <-deadline:
			t.Fatal("informer did not see web-1 created after the restart")
		}
	}
}

func TestStopKillsProcessGroups(t *testing.T) {
	c := Start(t)
	var pids []int
	for _, p := range c.Processes() {
		pids = append(pids, p.PID)
	}
	if len(pids) != 2 {
		t.Fatalf("processes %+v, want etcd and kube-apiserver", c.Processes())
	}
	c.Stop()
	c.Stop() // idempotent
	for _, pid := range pids {
		// Reaped children are gone: signal 0 to the group must find nothing.
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after Stop (kill: %v)", pid, err)
		}
	}
	if err := c.StartAPIServer(); !errors.Is(err, ErrStopped) {
		t.Errorf("StartAPIServer after Stop = %v, want ErrStopped", err)
	}
	if err := c.StopAPIServer(); !errors.Is(err, ErrStopped) {
		t.Errorf("StopAPIServer after Stop = %v, want ErrStopped", err)
	}
}

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			NodeName:   "node-a", // no scheduler runs; bind it ourselves
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

func setPodIP(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name, ip string) {
	t.Helper()
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func nextEvent(t *testing.T, ch <-chan watch.Event, timeout time.Duration) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no watch event in %v", timeout)
	}
	return watch.Event{}
}

func drainUntilClosed(t *testing.T, ch <-chan watch.Event, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch still open %v after the apiserver was killed", timeout)
		}
	}
}

func names(nss []corev1.Namespace) []string {
	out := make([]string, 0, len(nss))
	for _, n := range nss {
		out = append(out, n.Name)
	}
	return out
}
