package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestReplica runs a second kube-apiserver on the same etcd, as an HA
// control plane does: writes through either are read through the other,
// the replica keeps serving while the primary is down (the writes made
// then are there when it is back), the state file records it, and
// StopReplica and Stop kill it.
func TestReplica(t *testing.T) {
	bins := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Launch(ctx, Options{Dir: t.TempDir(), Binaries: &bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	r, err := c.StartReplica(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.URL == c.URL || r.Port == c.State().Port || !strings.HasPrefix(r.URL, "https://127.0.0.1:") {
		t.Errorf("replica at %s (port %d), primary at %s", r.URL, r.Port, c.URL)
	}
	if ps := c.Processes(); len(ps) != 3 || ps[2].Name != "kube-apiserver" || ps[2].PID != r.Process.PID {
		t.Errorf("processes with a replica: %+v", ps)
	}
	var st State
	if b, err := os.ReadFile(StateFile(c.Dir)); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 1 || st.Replicas[0].PID != r.Process.PID {
		t.Errorf("state file replicas %+v, want pid %d", st.Replicas, r.Process.PID)
	}

	create := func(via string, ns string) {
		t.Helper()
		cs := c.Client
		if via == "replica" {
			cs = r.Client
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s through the %s: %v", ns, via, err)
		}
	}
	create("primary", "through-primary")
	create("replica", "through-replica")
	for via, cs := range map[string]kubernetes.Interface{"primary": c.Client, "replica": r.Client} {
		for _, ns := range []string{"through-primary", "through-replica"} {
			if err := getNamespace(ctx, cs, ns); err != nil {
				t.Errorf("namespace %s through the %s: %v", ns, via, err)
			}
		}
	}

	// The primary down: the replica serves, and what was written through
	// it is there when the primary is back.
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
		t.Error("the primary answers after StopAPIServer")
	}
	create("replica", "during-outage")
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := getNamespace(ctx, c.Client, "during-outage"); err != nil {
		t.Errorf("the namespace created during the outage, through the restarted primary: %v", err)
	}

	if err := c.StopReplica(r); err != nil {
		t.Fatal(err)
	}
	if r.Process.Alive() {
		t.Error("replica alive after StopReplica")
	}
	if err := c.StopReplica(r); err == nil {
		t.Error("StopReplica twice succeeded")
	}
	if len(c.Replicas()) != 0 || len(c.State().Replicas) != 0 {
		t.Errorf("replicas after StopReplica: %+v / %+v", c.Replicas(), c.State().Replicas)
	}

	// Stop kills a running replica with the rest.
	r2, err := c.StartReplica(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if r2.Process.Alive() {
		t.Error("replica alive after Stop")
	}
	if _, err := c.StartReplica(ctx, 0); !errors.Is(err, ErrStopped) {
		t.Errorf("StartReplica after Stop = %v, want ErrStopped", err)
	}
}

func getNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	return err
}
