package compiler

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

var nftIdent = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_/.-]*$`)

func TestInterfaceName(t *testing.T) {
	seen := map[string]string{}
	for _, ns := range []string{"default", "kube-system", "a", "x"} {
		for _, p := range []string{"a", "b", "web-7d9f8c-x2x9z", strings.Repeat("p", 253)} {
			n := InterfaceName(ns, p)
			if len(n) > 15 || !strings.HasPrefix(n, "tab") || !regexp.MustCompile(`^tab[0-9a-f]{11}$`).MatchString(n) {
				t.Errorf("InterfaceName(%q, %q) = %q", ns, p, n)
			}
			if other, dup := seen[n]; dup {
				t.Errorf("InterfaceName collision: %s and %s/%s", other, ns, p)
			}
			seen[n] = ns + "/" + p
		}
	}
	// The separator matters: "a/bc" and "ab/c" must differ.
	if InterfaceName("a", "bc") == InterfaceName("ab", "c") {
		t.Error("InterfaceName ignores the namespace/pod boundary")
	}
}

func TestPolicyChainName(t *testing.T) {
	long := strings.Repeat("n", 190)
	for _, tc := range []struct {
		ref  policy.Ref
		d    policy.Direction
		want string // "" means: a hashed fallback
	}{
		{policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "allow-web"}, policy.Ingress, "knp/x/allow-web/ingress"},
		{policy.Ref{Kind: policy.KindClusterNetworkPolicy, Name: "name"}, policy.Egress, "cnp/name/egress"},
		{policy.Ref{Kind: policy.KindTabbyNetworkPolicy, Namespace: "ns", Name: "name.v2"}, policy.Ingress, "tnp/ns/name.v2/ingress"},
		{policy.Ref{Kind: policy.KindGlobalNetworkPolicy, Name: "name"}, policy.Ingress, "gnp/name/ingress"},
		{policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: long}, policy.Ingress, ""},
		{policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: "bad name"}, policy.Ingress, ""},
		{policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x/y", Name: "z"}, policy.Ingress, ""},
		{policy.Ref{Kind: "Other", Name: "z"}, policy.Ingress, ""},
	} {
		got := PolicyChainName(tc.ref, tc.d)
		if !nftIdent.MatchString(got) || len(got) > maxPolicyChainName+16 {
			t.Errorf("PolicyChainName(%v) = %q: not a valid nft identifier", tc.ref, got)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("PolicyChainName(%v) = %q, want %q", tc.ref, got, tc.want)
		}
		if tc.want == "" && !regexp.MustCompile(`^[a-z]{3}-[a-z2-7]{16}/(ingress|egress)$`).MatchString(got) {
			t.Errorf("PolicyChainName(%v) = %q, want a hashed fallback", tc.ref, got)
		}
	}
	a := PolicyChainName(policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: long + "a"}, policy.Ingress)
	b := PolicyChainName(policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "x", Name: long + "b"}, policy.Ingress)
	if a == b {
		t.Error("hashed fallback names collide")
	}
}

func TestSetAndChainNames(t *testing.T) {
	for _, n := range []string{
		SelectorSetName("abcdefghijklmnop", 4), NetSetName("10.0.0.0/8", 6), NamedPortSetName("x|http/TCP", 4),
		TierChainName("k"), ProfileChainName(policy.Ingress, "k"), ProfileChainName(policy.Egress, "k"),
	} {
		if !nftIdent.MatchString(n) {
			t.Errorf("%q is not a valid nft identifier", n)
		}
	}
	if NetSetName("a", 4) == NetSetName("b", 4) || NetSetName("a", 4) == NetSetName("a", 6) {
		t.Error("set names do not distinguish content and family")
	}
}
