package synth

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/selectors"
)

func TestDeterministic(t *testing.T) {
	for _, cfg := range []Config{Small(1), Small(2), Default()} {
		a, b := Generate(cfg), Generate(cfg)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("seed %d: two generations differ", cfg.Seed)
		}
	}
	if reflect.DeepEqual(Generate(Small(1)).Endpoints, Generate(Small(2)).Endpoints) {
		t.Error("different seeds give the same endpoints")
	}
}

func TestDefaultShape(t *testing.T) {
	cfg := Default()
	m := Generate(cfg)
	if len(m.Endpoints) != cfg.Pods || len(m.Policies) != cfg.Policies || len(m.NetworkSets) != cfg.NetworkSets {
		t.Fatalf("got %d pods, %d policies, %d network sets", len(m.Endpoints), len(m.Policies), len(m.NetworkSets))
	}
	local, dual := 0, 0
	ips := map[netip.Addr]string{}
	namespaces := map[string]bool{}
	named := 0
	for _, ep := range m.Endpoints {
		if ep.Node == cfg.Node {
			local++
		}
		if len(ep.IPs) == 2 {
			dual++
		}
		for _, ip := range ep.IPs {
			if other, dup := ips[ip]; dup {
				t.Fatalf("%v has address %v of %s", ep.Ref, ip, other)
			}
			ips[ip] = ep.Ref.String()
			if ip.Is4() && !netip.MustParsePrefix("10.0.0.0/8").Contains(ip) {
				t.Errorf("%v: address %v outside 10.0.0.0/8", ep.Ref, ip)
			}
		}
		for _, k := range []string{selectors.KeyKind, selectors.KeyNamespace, selectors.KeyServiceAccount,
			"ns:kubernetes.io/metadata.name", "ns:team", "app", "tier", "version"} {
			if _, ok := ep.Labels[k]; !ok {
				t.Fatalf("%v lacks label %s", ep.Ref, k)
			}
		}
		if ep.Labels[selectors.KeyNamespace] != ep.Ref.Namespace {
			t.Fatalf("%v: namespace label %q", ep.Ref, ep.Labels[selectors.KeyNamespace])
		}
		namespaces[ep.Ref.Namespace] = true
		for _, p := range ep.Ports {
			if p.Name != "" {
				named++
			}
		}
	}
	if local != cfg.PodsPerNode {
		t.Errorf("%d pods on %s, want %d", local, cfg.Node, cfg.PodsPerNode)
	}
	if dual < cfg.Pods*cfg.DualStackPercent/200 || dual > cfg.Pods*cfg.DualStackPercent*2/100 {
		t.Errorf("%d dual-stack pods for %d%%", dual, cfg.DualStackPercent)
	}
	if len(namespaces) != cfg.Namespaces {
		t.Errorf("pods in %d namespaces, want %d", len(namespaces), cfg.Namespaces)
	}
	if named < cfg.Pods {
		t.Errorf("only %d named ports", named)
	}
	kinds := map[string]int{}
	for _, p := range m.Policies {
		kinds[string(p.Ref.Kind)+"/"+p.Tier]++
		for _, r := range append(append([]policy.Rule(nil), p.IngressRules...), p.EgressRules...) {
			kinds["action/"+r.Action.String()]++
			if len(r.Source.Nets)+len(r.Destination.Nets) > 0 {
				kinds["nets"]++
			}
			if len(r.Source.NotNets) > 0 {
				kinds["except"]++
			}
			if len(r.Destination.NamedPorts) > 0 {
				kinds["named/"+p.Tier+"/"+fmt.Sprint(p.Ingress, p.Egress)]++
			}
		}
		if p.Subject == nil {
			t.Fatalf("%v has no subject", p.Ref)
		}
	}
	for _, want := range []string{
		"NetworkPolicy/kubernetes", "ClusterNetworkPolicy/cnp-admin", "ClusterNetworkPolicy/cnp-baseline",
		"tabby.dev/NetworkPolicy/security", "tabby.dev/GlobalNetworkPolicy/security",
		"action/Allow", "action/Deny", "action/Pass", "action/Log", "nets", "except",
		"named/kubernetes/true false", "named/kubernetes/false true",
	} {
		if kinds[want] == 0 {
			t.Errorf("no %s in the default cluster (have %v)", want, kinds)
		}
	}
	if f := float64(kinds["NetworkPolicy/kubernetes"]) / float64(cfg.Policies); f < 0.6 || f > 0.8 {
		t.Errorf("Kubernetes policies are %.0f%% of all", 100*f)
	}
}

func TestTiersInOrder(t *testing.T) {
	m := Generate(Small(3))
	var names []string
	for _, tier := range m.Tiers {
		names = append(names, tier.Name)
	}
	if got := strings.Join(names, ","); got != "cnp-admin,security,kubernetes,cnp-baseline" {
		t.Errorf("tiers %s", got)
	}
	for _, p := range m.Policies {
		found := false
		for _, tier := range m.Tiers {
			found = found || tier.Name == p.Tier
		}
		if !found {
			t.Errorf("%v names unknown tier %q", p.Ref, p.Tier)
		}
	}
}
