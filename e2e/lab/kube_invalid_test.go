package lab_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/e2e/lab"
)

// guardPolicy is a Tabby NetworkPolicy admitting to x/a only x/b on
// ingressRule's terms.
func guardPolicy(name, ingressRule string) string {
	return `apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: ` + name + `, namespace: x}
spec:
  selector: app == "a"
  ingress:
  - ` + ingressRule + "\n"
}

// rejectionSettle is how long the test watches the agents after kubectl's
// rejection: a write that reached etcd would reach them as a watch event
// within milliseconds; a rejected one must never.
const rejectionSettle = time.Second

// TestKubernetesInvalidPolicyRejected is issue 4's "kubectl apply of an
// invalid Tabby policy is rejected, with a message naming the field", on a
// running Kubernetes-mode lab: the real kubectl, through the lab's admin
// kubeconfig, applies files with an invalid change to an enforced policy
// and an invalid new one. Each is refused with the field named, the API
// keeps the enforced version, and the agents do nothing: the same table in
// every node's kernel, no sync, no problem, and measured == predicted as
// before. A valid change applied the same way then does change the tables,
// so the comparison above could have failed.
func TestKubernetesInvalidPolicyRejected(t *testing.T) {
	requireRoot(t)
	kubetest.RequireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs := append(kubeWorld(), decodeObjects(t, guardPolicy("guard",
		`{action: Allow, protocol: TCP, source: {selector: app == "b"}, destination: {ports: [80]}}`))...)
	l := upLab(t, lab.Config{Objects: objs, Nodes: 2, Name: "tlab-kinval", Kubernetes: true})
	kube, err := l.Kube()
	if err != nil {
		t.Fatal(err)
	}
	base := checkMatrix(ctx, t, l, "with guard", l.Objects())
	if a := countAllowed(base); a == 0 || a == len(base.Results) {
		t.Fatalf("with guard %d of %d probes allowed: the test would show nothing", a, len(base.Results))
	}
	gvr := schema.GroupVersionResource{Group: "tabby.dev", Version: "v1alpha1", Resource: "networkpolicies"}
	stored, err := kube.Dynamic.Resource(gvr).Namespace("x").Get(ctx, "guard", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tables, err := nftTables(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	before, err := statuses(ctx, l)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for _, tc := range []struct {
		name, doc string
		want      []string // in kubectl's stderr
	}{
		{"changed port range reversed", guardPolicy("guard",
			`{action: Allow, protocol: TCP, source: {selector: app == "b"}, destination: {ports: ["9000:8000"]}}`),
			[]string{`NetworkPolicy "guard" is invalid`, `spec.ingress[0].destination.ports[0]: Invalid value: "9000:8000"`}},
		{"new with a bad CIDR", guardPolicy("guard-2", `{action: Deny, source: {nets: [10.0.0.0/33]}}`),
			[]string{`NetworkPolicy "guard-2" is invalid`, `spec.ingress[0].source.nets[0]: Invalid value: "10.0.0.0/33"`}},
		{"new with an unknown action", guardPolicy("guard-3", `{action: Accept}`),
			[]string{`spec.ingress[0].action: Unsupported value: "Accept"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "-f", file)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err == nil {
				t.Fatalf("kubectl apply -f %s accepted:\n%s%s", file, tc.doc, stdout.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("kubectl's error does not name %q:\n%s", w, stderr.String())
				}
			}
			t.Logf("kubectl: %s", strings.TrimSpace(stderr.String()))
		})
	}

	// Nothing reached the API, so nothing reaches the agents.
	time.Sleep(rejectionSettle)
	got, err := kube.Dynamic.Resource(gvr).Namespace("x").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range got.Items {
		names = append(names, u.GetName()+"@"+u.GetResourceVersion())
	}
	if want := "guard@" + stored.GetResourceVersion(); len(names) != 1 || names[0] != want {
		t.Errorf("after the rejections the API holds the Tabby policies %v in x, want only %s", names, want)
	}
	tablesAfter, err := nftTables(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	after, err := statuses(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range sameEnforcement(tables, tablesAfter, before, after, false) {
		t.Errorf("after the rejections: %s", d)
	}
	fromAPI, err := l.APIObjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now := checkMatrix(ctx, t, l, "after the rejections", fromAPI); !reflect.DeepEqual(now.Results, base.Results) {
		t.Error("the prediction from the API changed although every change was rejected")
	}

	// The same way, a valid change goes through and changes the tables.
	file := filepath.Join(dir, "valid.yaml")
	if err := os.WriteFile(file, []byte(guardPolicy("guard",
		`{action: Allow, protocol: UDP, source: {selector: app == "b"}, destination: {ports: [53]}}`)), 0o644); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	if out, err := exec.CommandContext(ctx, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply of a valid change: %v: %s", err, out)
	}
	if err := l.WaitSyncedAfter(ctx, since); err != nil {
		t.Fatal(err)
	}
	if tablesValid, err := nftTables(ctx, l); err != nil {
		t.Fatal(err)
	} else if reflect.DeepEqual(tablesValid, tables) {
		t.Error("a valid change left every node's table as it was: the comparison above shows nothing")
	}
	if fromAPI, err = l.APIObjects(ctx); err != nil {
		t.Fatal(err)
	}
	if valid := checkMatrix(ctx, t, l, "valid change", fromAPI); reflect.DeepEqual(valid.Results, base.Results) {
		t.Error("the valid change did not change the prediction")
	}
}
