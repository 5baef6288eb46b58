package policy

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/selectors"
)

func TestNormalizeTiers(t *testing.T) {
	m, errs := Normalize(nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []Tier{
		{Name: TierAdmin, DefaultAction: ActionPass},
		{Name: "default", Order: 1_000_000, DefaultAction: ActionDeny},
		{Name: TierKubernetes, DefaultAction: ActionDeny},
		{Name: TierBaseline, DefaultAction: ActionPass},
	}
	if !slices.Equal(m.Tiers, want) {
		t.Errorf("tiers = %+v, want %+v", m.Tiers, want)
	}
}

func TestTierOrder(t *testing.T) {
	got := tierOrder(map[string]Tier{
		"default":  {Name: "default", Order: 1_000_000, DefaultAction: ActionDeny},
		"b":        {Name: "b", Order: 10, DefaultAction: ActionPass},
		"a":        {Name: "a", Order: 10, DefaultAction: ActionDeny},
		"first":    {Name: "first", Order: -5, DefaultAction: ActionDeny},
		"last-one": {Name: "last-one", Order: 2e6, DefaultAction: ActionDeny},
	})
	var names []string
	for _, t := range got {
		names = append(names, t.Name)
	}
	want := []string{TierAdmin, "first", "a", "b", "default", "last-one", TierKubernetes, TierBaseline}
	if !slices.Equal(names, want) {
		t.Errorf("tier order %v, want %v", names, want)
	}
}

func TestNormalizeReplacesByRef(t *testing.T) {
	m, errs := modelOf(t, `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {v: "1"}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: other, labels: {v: "1"}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: shop}
spec: {podSelector: {}, ingress: [{ports: [{port: 1, endPort: 0}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {v: "2"}}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: shop}
spec: {podSelector: {}}
`)
	if len(errs) > 0 {
		t.Fatalf("the invalid first NetworkPolicy was replaced, yet: %v", errs)
	}
	if len(m.Endpoints) != 2 {
		t.Fatalf("endpoints: %+v", m.Endpoints)
	}
	web := m.Endpoints[1]
	if web.Ref.Namespace != "shop" || web.Labels["v"] != "2" || !slices.Equal(web.IPs, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) {
		t.Errorf("shop/web = %+v, want the second version", web)
	}
	if len(m.Policies) != 1 || len(m.Policies[0].IngressRules) != 0 {
		t.Errorf("policies = %+v, want the second np only", m.Policies)
	}
}

func TestNormalizeSetsInvalidAside(t *testing.T) {
	m, errs := modelOf(t, `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {"bad key": x}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop, labels: {role: "-bad"}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccountName: api}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ok, namespace: shop}
spec: {podSelector: {}}
`)
	want := []string{
		`test.yaml (document 1): Namespace shop: metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
		`test.yaml (document 2): ServiceAccount shop/api: metadata.labels: Invalid value: "-bad": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
	}
	if got := errorStrings(errs); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The pod survives: its namespace counts as undeclared and its service
	// account as absent, so it carries only the implied labels.
	if len(m.Endpoints) != 1 {
		t.Fatalf("endpoints = %+v", m.Endpoints)
	}
	wantLabels := selectors.Map{
		"app": "web", "ns:kubernetes.io/metadata.name": "shop",
		"tabby:kind": "pod", "tabby:namespace": "shop", "tabby:serviceaccount": "api",
	}
	if !mapsEqual(m.Endpoints[0].Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", m.Endpoints[0].Labels, wantLabels)
	}
	if len(m.Policies) != 1 {
		t.Errorf("policies = %+v", m.Policies)
	}
}

func mapsEqual(a, b selectors.Map) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name   string
		pod    string // metadata, spec and status of a Pod in namespace shop
		skip   bool
		ips    []string
		ports  []ContainerPort
		labels map[string]string // checked keys only
		errs   []string
	}{
		{
			name:   "service account defaults to default; namespace labels",
			pod:    "metadata: {name: p, namespace: shop}",
			labels: map[string]string{"tabby:serviceaccount": "default", "ns:team": "retail", "ns:kubernetes.io/metadata.name": "shop", "sa:tier": ""},
		},
		{
			name:   "service account labels when the ServiceAccount exists",
			pod:    "metadata: {name: p, namespace: shop}\nspec: {serviceAccountName: api}",
			labels: map[string]string{"tabby:serviceaccount": "api", "sa:tier": "backend"},
		},
		{
			name:   "deprecated serviceAccount",
			pod:    "metadata: {name: p, namespace: shop}\nspec: {serviceAccount: api}",
			labels: map[string]string{"tabby:serviceaccount": "api", "sa:tier": "backend"},
		},
		{
			name: "host network is not an endpoint",
			pod:  "metadata: {name: p, namespace: shop}\nspec: {hostNetwork: true}",
			skip: true,
		},
		{
			name: "succeeded is not an endpoint",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {phase: Succeeded}",
			skip: true,
		},
		{
			name: "failed is not an endpoint",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {phase: Failed}",
			skip: true,
		},
		{
			name: "pending without IPs is an endpoint",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {phase: Pending}",
		},
		{
			name: "dual stack, deduplicated, IPv4-mapped unmapped",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: \"fd00::1\"}, {ip: \"::ffff:10.0.0.1\"}]}",
			ips:  []string{"10.0.0.1", "fd00::1"},
		},
		{
			name: "podIP is authoritative when it disagrees with podIPs",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {podIP: 10.0.0.9, podIPs: [{ip: 10.0.0.1}, {ip: \"fd00::1\"}]}",
			ips:  []string{"10.0.0.9"},
		},
		{
			name: "ports: protocol default, sidecars, sorted",
			pod: `metadata: {name: p, namespace: shop}
spec:
  initContainers:
    - {name: side, restartPolicy: Always, ports: [{name: admin, containerPort: 9901}]}
    - {name: init, ports: [{name: once, containerPort: 1}]}
  containers:
    - {name: a, ports: [{name: http, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]}
    - {name: b, ports: [{containerPort: 53, protocol: SCTP}]}`,
			ports: []ContainerPort{
				{Name: "dns", Port: 53, Protocol: ProtoUDP}, {Port: 53, Protocol: ProtoSCTP},
				{Name: "http", Port: 80, Protocol: ProtoTCP}, {Name: "admin", Port: 9901, Protocol: ProtoTCP},
			},
		},
		{
			name: "two addresses of one family",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]}",
			errs: []string{`status.podIPs: Invalid value: [{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}]: may specify no more than one IP for each IP family`},
		},
		{
			name: "bad address, zone, unspecified",
			pod:  "metadata: {name: p, namespace: shop}\nstatus: {podIPs: [{ip: \"fe80::1%eth0\"}, {ip: 0.0.0.0}]}",
			errs: []string{
				`status.podIPs[0].ip: Invalid value: "fe80::1%eth0": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`,
				`status.podIPs[1].ip: Invalid value: "0.0.0.0": must not be the unspecified address`,
			},
		},
		{
			name: "bad container ports",
			pod:  "metadata: {name: p, namespace: shop}\nspec: {containers: [{name: c, ports: [{name: http, containerPort: 80, protocol: ICMP}, {name: http, containerPort: 81}, {hostPort: 70000, containerPort: 1}]}]}",
			errs: []string{
				`spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`,
				`spec.containers[0].ports[1].name: Duplicate value: "http"`,
				`spec.containers[0].ports[2].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive`,
			},
		},
		{
			name: "bad service account and node names",
			pod:  "metadata: {name: p, namespace: shop}\nspec: {serviceAccountName: Api, nodeName: node_1}",
			errs: []string{
				`spec.serviceAccountName: Invalid value: "Api": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.nodeName: Invalid value: "node_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			},
		},
	}
	world := "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: retail}}\n---\n" +
		"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: shop, labels: {tier: backend}}\n---\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, errs := modelOf(t, world+"apiVersion: v1\nkind: Pod\n"+tt.pod+"\n")
			var want []string
			for _, e := range tt.errs {
				want = append(want, "test.yaml (document 3): Pod shop/p: "+e)
			}
			if got := errorStrings(errs); !slices.Equal(got, want) {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if tt.skip || len(tt.errs) > 0 {
				if len(m.Endpoints) != 0 {
					t.Errorf("endpoints = %+v, want none", m.Endpoints)
				}
				return
			}
			if len(m.Endpoints) != 1 {
				t.Fatalf("endpoints = %+v, want one", m.Endpoints)
			}
			e := m.Endpoints[0]
			var ips []string
			for _, a := range e.IPs {
				ips = append(ips, a.String())
			}
			if !slices.Equal(ips, tt.ips) {
				t.Errorf("IPs = %v, want %v", ips, tt.ips)
			}
			if !slices.Equal(e.Ports, tt.ports) {
				t.Errorf("ports = %+v, want %+v", e.Ports, tt.ports)
			}
			for k, v := range tt.labels {
				if got, ok := e.Labels[k]; v == "" && ok {
					t.Errorf("label %s = %q, want it absent", k, got)
				} else if v != "" && got != v {
					t.Errorf("label %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestNormalizeDeterministic feeds the same objects in shuffled orders: the
// model must not change (duplicates aside, input order must not matter).
func TestNormalizeDeterministic(t *testing.T) {
	objs, err := LoadFiles("testdata/netpol.yaml", "testdata/cnp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// cnp.yaml redefines Namespace shop and Pod shop/web: keep one of each so
	// that order does not decide which survives.
	seen := map[Ref]bool{}
	objs = slices.DeleteFunc(objs, func(o Object) bool {
		dup := seen[o.Ref]
		seen[o.Ref] = true
		return dup
	})
	m, errs := Normalize(objs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := m.Dump()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		shuffled := slices.Clone(objs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		m2, _ := Normalize(shuffled)
		if got := m2.Dump(); got != want {
			t.Fatalf("shuffle %d changed the model:\n%s", i, diffLines(want, got))
		}
		if !slices.EqualFunc(m.Policies, m2.Policies, func(a, b Policy) bool { return a.Ref == b.Ref }) {
			t.Fatalf("shuffle %d changed the policy order", i)
		}
	}
}

// TestNormalizeErrorOrder: errors come in file order (as first seen in the
// input), then document order, whatever kind of object they are about.
func TestNormalizeErrorOrder(t *testing.T) {
	badPod := func(file string, doc int) Object {
		o, err := DecodeDocument(Source{File: file, Doc: doc}, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p"+file+"}\nstatus: {podIP: x}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	badNS, err := DecodeDocument(Source{File: "z", Doc: 1}, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1, labels: {a: \"-x\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, errs := Normalize([]Object{badPod("z", 2), badPod("a", 1), badNS})
	var got []string
	for _, e := range errs {
		fe := e.(*FieldError)
		got = append(got, fe.Source.String())
	}
	want := []string{"z (document 1)", "z (document 2)", "a (document 1)"}
	if !slices.Equal(got, want) {
		t.Errorf("error order %v, want %v", got, want)
	}
}

// TestNormalizeTabbyTiers goes through the Tabby-kind seam: Tier objects take
// their place between cnp-admin and kubernetes by (order, name), and policies
// are sorted by tier position first.
func TestNormalizeTabbyTiers(t *testing.T) {
	m, errs := modelOf(t, `apiVersion: tabby.dev/v1alpha1
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: tabby.dev/v1alpha1
kind: Tier
metadata: {name: audit}
spec: {order: 100}
---
apiVersion: tabby.dev/v1alpha1
kind: Tier
metadata: {name: late}
spec: {order: 2000000}
---
apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec: {tier: security, selector: all(), ingress: [{action: Allow}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: shop}
spec: {podSelector: {}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: base}
spec: {tier: Baseline, priority: 0, subject: {namespaces: {}}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin}
spec: {tier: Admin, priority: 5, subject: {namespaces: {}}}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var tiers []string
	for _, tr := range m.Tiers {
		tiers = append(tiers, tr.Name+"/"+tr.DefaultAction.String())
	}
	want := []string{"cnp-admin/Pass", "audit/Deny", "security/Pass", "default/Deny", "late/Deny", "kubernetes/Deny", "cnp-baseline/Pass"}
	if !slices.Equal(tiers, want) {
		t.Errorf("tiers %v, want %v", tiers, want)
	}
	var pols []string
	for _, p := range m.Policies {
		pols = append(pols, p.Tier+":"+p.Ref.Name)
	}
	wantPols := []string{"cnp-admin:admin", "security:p", "kubernetes:a", "cnp-baseline:base"}
	if !slices.Equal(pols, wantPols) {
		t.Errorf("policies %v, want %v", pols, wantPols)
	}
}
