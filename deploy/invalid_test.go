package deploy

import (
	"strings"
	"testing"

	"github.com/tabbynet/tabby/e2e/kubetest"
)

// policy is a Tabby NetworkPolicy in namespace shop with one ingress rule.
func policy(name, rule string) string {
	return `apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: ` + name + `, namespace: shop}
spec:
  selector: app == "web"
  ingress:
  - ` + rule + "\n"
}

// testInvalidPolicies is issue 4's "kubectl apply of an invalid Tabby
// policy is rejected, with a message naming the field", through the path
// users take: `kubectl apply -f` (client-side apply, strict field
// validation) against the CRDs as tabby.yaml installs them. deploy/crdcheck
// covers the validation rules one by one at the API level.
func testInvalidPolicies(t *testing.T, c *kubetest.Cluster) {
	mustKubectl(t, c, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "apply", "-f", "-")
	// A valid policy goes in: the rejections below are about the fields.
	mustKubectl(t, c, policy("valid", `{action: Allow, protocol: TCP, source: {nets: [10.0.0.0/8]}, destination: {ports: [80, "8000:8080"]}}`), "apply", "-f", "-")
	if out := mustKubectl(t, c, "", "get", "networkpolicies.tabby.dev", "-n", "shop", "valid", "-o", "name"); strings.TrimSpace(out) != "networkpolicy.tabby.dev/valid" {
		t.Fatalf("the valid policy was not stored: %q", out)
	}

	cases := []struct {
		name, doc string
		want      []string // substrings of kubectl's error
	}{
		{"port range", policy("bad-range", `{action: Allow, protocol: TCP, destination: {ports: ["9000:8000"]}}`),
			[]string{`NetworkPolicy "bad-range" is invalid`, `spec.ingress[0].destination.ports[0]: Invalid value: "9000:8000"`, "first <= last"}},
		{"port out of range", policy("bad-port", `{action: Allow, protocol: TCP, destination: {ports: [65536]}}`),
			[]string{`spec.ingress[0].destination.ports[0]: Invalid value: 65536`, "1-65535"}},
		{"ports without protocol", policy("no-proto", `{action: Allow, destination: {ports: [80]}}`),
			[]string{"spec.ingress[0]: Invalid value", "need protocol TCP, UDP or SCTP"}},
		{"CIDR", policy("bad-cidr", `{action: Allow, source: {nets: [10.0.0.0/33]}}`),
			[]string{`spec.ingress[0].source.nets[0]: Invalid value: "10.0.0.0/33"`, "must be a CIDR"}},
		{"action", policy("bad-action", `{action: Accept}`),
			[]string{`spec.ingress[0].action: Unsupported value: "Accept"`}},
		{"unknown field", policy("bad-field", "{action: Allow}") + "  color: blue\n",
			[]string{`unknown field "spec.color"`}},
		{"built-in tier", `apiVersion: tabby.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: bad-tier}
spec: {tier: kubernetes, selector: all()}
`, []string{`GlobalNetworkPolicy "bad-tier" is invalid`, `spec.tier: Invalid value: "kubernetes"`, "built-in tier"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := kubectl(t, c, tc.doc, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply accepted it:\n%s%s", tc.doc, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("kubectl's error does not name %q:\n%s", w, errOut)
				}
			}
			t.Logf("%s", strings.TrimSpace(errOut))
		})
	}
	// Nothing invalid was stored: only the valid policy is there.
	if out := mustKubectl(t, c, "", "get", "networkpolicies.tabby.dev,globalnetworkpolicies.tabby.dev", "-A", "-o", "name"); strings.TrimSpace(out) != "networkpolicy.tabby.dev/valid" {
		t.Errorf("stored policies: %q, want only the valid one", out)
	}
}
