package lab

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

// TestAPIObjects checks what the lab sends to the API server for the
// objects of a lab: bodies without status, images filled in, implied
// namespaces added bare, pod status from the placement, identical output
// for identical input (the "changed" comparison relies on it).
func TestAPIObjects(t *testing.T) {
	objs := decode(t, `apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: p, namespace: "y"}
spec:
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, "8000:8080"]}}]
`+pod("x", "a", "node-2", "")+pod("z", "b", "", "10.9.9.9"))
	p, err := makePlan(objs, 2)
	if err != nil {
		t.Fatal(err)
	}
	placed, err := placeObjects(objs, p, false)
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{cfg: Config{Name: "t", Nodes: 2}, plan: p}
	l.st = newState(Config{Name: "t", StateDir: t.TempDir(), Nodes: 2, Kubernetes: true}, p)
	got, err := l.apiObjects(placed)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"x", "y", "z"} {
		if got[policy.Ref{Kind: policy.KindNamespace, Name: ns}] == nil {
			t.Errorf("namespace %s missing (declared or implied)", ns)
		}
	}
	if y := got[policy.Ref{Kind: policy.KindNamespace, Name: "y"}]; y != nil && string(y.enc) != `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"y"}}` {
		t.Errorf("implied namespace y: %s", y.enc)
	}
	if x := got[policy.Ref{Kind: policy.KindNamespace, Name: "x"}]; x == nil || !strings.Contains(string(x.enc), `"team":"a"`) {
		t.Errorf("declared namespace x lost its labels: %+v", x)
	}
	np := got[policy.Ref{Kind: policy.KindTabbyNetworkPolicy, Namespace: "y", Name: "p"}]
	if np == nil || np.info.gvr.Group != "tabby.dev" || !strings.Contains(string(np.enc), `"ports":[80,"8000:8080"]`) {
		t.Fatalf("tabby NetworkPolicy: %+v", np)
	}
	for ref, ao := range got {
		if strings.Contains(string(ao.enc), `"status"`) || strings.Contains(string(ao.enc), "creationTimestamp") {
			t.Errorf("%s: body carries status or server fields: %s", ref, ao.enc)
		}
	}
	a := got[policy.Ref{Kind: policy.KindPod, Namespace: "x", Name: "a"}]
	if a == nil {
		t.Fatal("pod x/a missing")
	}
	if !strings.Contains(string(a.enc), `"image":"`+PauseImage+`"`) || !strings.Contains(string(a.enc), `"nodeName":"node-2"`) {
		t.Errorf("pod x/a body: %s", a.enc)
	}
	var st struct {
		Phase             string              `json:"phase"`
		PodIP             string              `json:"podIP"`
		PodIPs            []map[string]string `json:"podIPs"`
		HostIP            string              `json:"hostIP"`
		Conditions        []map[string]string `json:"conditions"`
		ContainerStatuses []map[string]any    `json:"containerStatuses"`
	}
	if err := json.Unmarshal(a.statusEnc, &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != "Running" || st.PodIP != "10.244.2.10" || len(st.PodIPs) != 1 || st.HostIP != "192.168.254.12" ||
		len(st.Conditions) != 4 || len(st.ContainerStatuses) != 1 || st.ContainerStatuses[0]["ready"] != true {
		t.Errorf("pod x/a status: %s", a.statusEnc)
	}
	if b := got[policy.Ref{Kind: policy.KindPod, Namespace: "z", Name: "b"}]; b == nil || !strings.Contains(string(b.statusEnc), `"podIP":"10.9.9.9"`) {
		t.Errorf("pod z/b keeps its own address: %+v", b)
	}
	again, err := l.apiObjects(placed)
	if err != nil {
		t.Fatal(err)
	}
	for ref, ao := range got {
		if b := again[ref]; b == nil || string(b.enc) != string(ao.enc) || string(b.statusEnc) != string(ao.statusEnc) {
			t.Errorf("%s: a second conversion differs", ref)
		}
	}
}

func TestProtected(t *testing.T) {
	for ref, want := range map[policy.Ref]bool{
		{Kind: policy.KindNamespace, Name: "default"}:                              true,
		{Kind: policy.KindNamespace, Name: AgentNamespace}:                         true,
		{Kind: policy.KindNamespace, Name: "x"}:                                    false,
		{Kind: policy.KindServiceAccount, Namespace: AgentNamespace, Name: "a"}:    true,
		{Kind: policy.KindServiceAccount, Namespace: "kube-system", Name: "a"}:     true,
		{Kind: policy.KindPod, Namespace: "default", Name: "a"}:                    false,
		{Kind: policy.KindClusterNetworkPolicy, Name: "kube-system"}:               false,
		{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "kube-system"}:   false,
		{Kind: policy.KindGlobalNetworkPolicy, Name: AgentNamespace}:               false,
		{Kind: policy.KindTabbyNetworkPolicy, Namespace: "kube-public", Name: "p"}: true,
	} {
		if got := protected(ref); got != want {
			t.Errorf("protected(%s) = %v, want %v", ref, got, want)
		}
	}
	if systemRef(policy.Ref{Kind: policy.KindNamespace, Name: "default"}) {
		t.Error("the default namespace is not a system object: its pods are the lab's")
	}
}
