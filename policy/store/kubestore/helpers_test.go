package kubestore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crd reads one CRD manifest.
func crd(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &unstructured.Unstructured{Object: m}
}

// tabbyCRDs are deploy/crds' CRDs; cnpCRD is the network-policy-api
// module's standard-channel ClusterNetworkPolicy CRD.
func tabbyCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	paths, err := filepath.Glob("../../../deploy/crds/tabby.dev_*.yaml")
	if err != nil || len(paths) < 5 {
		t.Fatalf("deploy/crds: %v %v", paths, err)
	}
	var out []*unstructured.Unstructured
	for _, p := range paths {
		out = append(out, crd(t, p))
	}
	return out
}

func cnpCRD(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		t.Fatalf("go list sigs.k8s.io/network-policy-api: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	return crd(t, filepath.Join(dir, "config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml"))
}

// installCRDs creates CRDs and waits until each is Established.
func installCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, crds ...*unstructured.Unstructured) {
	t.Helper()
	for _, c := range crds {
		if _, err := dyn.Resource(crdGVR).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", c.GetName(), err)
		}
	}
	for _, c := range crds {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := dyn.Resource(crdGVR).Get(ctx, c.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, cd := range conds {
				m, _ := cd.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not established: %v", c.GetName(), err)
		}
	}
}

// objectClient is the dynamic client of an object's resource.
func objectClient(t *testing.T, dyn dynamic.Interface, ref policy.Ref) dynamic.ResourceInterface {
	t.Helper()
	r := resourceFor(t, ref.Kind)
	if ref.Namespace == "" {
		return dyn.Resource(r.gvr)
	}
	return dyn.Resource(r.gvr).Namespace(ref.Namespace)
}

// create creates objects through the API.
func create(ctx context.Context, t *testing.T, dyn dynamic.Interface, objs ...policy.Object) {
	t.Helper()
	for _, o := range objs {
		v, err := o.Typed()
		if err != nil {
			t.Fatal(err)
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := objectClient(t, dyn, o.Ref).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", o.Ref, err)
		}
	}
}

// testLogger logs to the test until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)

// runStore runs a Store on cfg until the test ends, and returns its recorder.
func runStore(t *testing.T, cfg *rest.Config, recheck time.Duration) *storetest.Recorder {
	t.Helper()
	s, err := New(Config{REST: cfg, Node: "node-1", Logger: testLogger(t), RecheckInterval: recheck})
	if err != nil {
		t.Fatal(err)
	}
	rec := storetest.NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30 s after its context ended")
		}
	})
	return rec
}

// waitFor waits up to timeout for cond on the recorded calls.
func waitFor(t *testing.T, rec *storetest.Recorder, timeout time.Duration, what string, cond func([]storetest.Call) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := rec.WaitFor(ctx, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// upserted reports whether calls upsert ref with a version for which ok holds.
func upserted(calls []storetest.Call, ref policy.Ref, ok func(policy.Object) bool) bool {
	for _, c := range calls {
		if c.Op == "upsert" && c.Ref == ref && (ok == nil || ok(c.Object)) {
			return true
		}
	}
	return false
}

func deleted(calls []storetest.Call, ref policy.Ref) bool {
	for _, c := range calls {
		if c.Op == "delete" && c.Ref == ref {
			return true
		}
	}
	return false
}

func labelsOf(o policy.Object) map[string]string {
	v, err := o.Typed()
	if err != nil {
		return nil
	}
	return v.(metav1.Object).GetLabels()
}

// freshState lists every resource through the API, as the store would
// deliver it now: the state the recorder must have converged to.
func freshState(ctx context.Context, t *testing.T, dyn dynamic.Interface) map[policy.Ref]policy.Object {
	t.Helper()
	st := map[policy.Ref]policy.Object{}
	for _, r := range resources() {
		list, err := dyn.Resource(r.gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list %s: %v", r.gvr, err)
		}
		for i := range list.Items {
			var obj any = &list.Items[i]
			if _, typed := r.example.(*unstructured.Unstructured); !typed {
				v := r.example.DeepCopyObject()
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, v); err != nil {
					t.Fatal(err)
				}
				obj = v
			}
			obj, _ = r.transform(obj)
			if r.absent != nil && r.absent(obj) {
				continue
			}
			o, err := r.convert(policy.Source{File: r.source()}, obj)
			if err != nil {
				t.Fatalf("convert %s: %v", list.Items[i].GetName(), err)
			}
			st[o.Ref] = o
		}
	}
	return st
}

// sameContent compares two deliveries of an object apart from
// resourceVersion (the store does not redeliver an object when only what
// it drops changed).
func sameContent(a, b policy.Object) error {
	x, err1 := a.Typed()
	y, err2 := b.Typed()
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%v %v", err1, err2)
	}
	x.(metav1.Object).SetResourceVersion("")
	y.(metav1.Object).SetResourceVersion("")
	if !equality.Semantic.DeepEqual(x, y) {
		return fmt.Errorf("%#v\n!=\n%#v", x, y)
	}
	return nil
}
