package policy

import (
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/selectors"
)

var tabbyTestSource = Source{File: "t.yaml", Doc: 1}

// tabbyTestCluster has two namespaces (shop: team a, other: team b) and the
// tiers default and security.
func tabbyTestCluster() *Cluster {
	return &Cluster{
		Namespaces: map[string]map[string]string{
			"shop":  {"team": "a", "kubernetes.io/metadata.name": "shop"},
			"other": {"team": "b", "kubernetes.io/metadata.name": "other"},
		},
		Tiers: map[string]bool{"default": true, "security": true},
	}
}

func tabbyDecode(t *testing.T, kind, doc string) (Object, error) {
	t.Helper()
	o := Object{Source: tabbyTestSource}
	err := decodeTabby(kind, []byte(doc), &o)
	return o, err
}

// tabbyDoc builds a document of a Tabby kind; meta and spec are YAML flow
// mappings without braces, e.g. "name: web, namespace: shop".
func tabbyDoc(kind, meta, spec string) string {
	return "apiVersion: tabby.dev/v1alpha1\nkind: " + kind + "\nmetadata: {" + meta + "}\nspec: {" + spec + "}\n"
}

// tabbyPolicy decodes and normalises a NetworkPolicy shop/web ("np") or a
// GlobalNetworkPolicy web ("gnp") with the given flow spec.
func tabbyPolicy(t *testing.T, which, spec string) (Policy, error) {
	t.Helper()
	kind, meta := tabbyv1.KindNetworkPolicy, "name: web, namespace: shop"
	if which == "gnp" {
		kind, meta = tabbyv1.KindGlobalNetworkPolicy, "name: web"
	}
	o, err := tabbyDecode(t, kind, tabbyDoc(kind, meta, spec))
	if err != nil {
		t.Fatalf("decode %s: %v", spec, err)
	}
	return normalizeTabbyPolicy(o, tabbyTestCluster())
}

func tabbyMustPolicy(t *testing.T, which, spec string) Policy {
	t.Helper()
	p, err := tabbyPolicy(t, which, spec)
	if err != nil {
		t.Fatalf("normalise %s: %v", spec, err)
	}
	return p
}

// tabbyFieldErrors flattens an error (joined or not) into its FieldErrors and
// fails on anything else.
func tabbyFieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	out := make([]*FieldError, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func TestDecodeTabbyKinds(t *testing.T) {
	cases := []struct {
		kind, meta string
		want       Ref
		field      func(o Object) bool
	}{
		{"Tier", "name: security", Ref{KindTier, "", "security"}, func(o Object) bool { return o.Tier != nil }},
		{"NetworkPolicy", "name: web, namespace: shop", Ref{KindTabbyNetworkPolicy, "shop", "web"},
			func(o Object) bool { return o.TabbyNetworkPolicy != nil }},
		{"GlobalNetworkPolicy", "name: web", Ref{KindGlobalNetworkPolicy, "", "web"},
			func(o Object) bool { return o.GlobalNetworkPolicy != nil }},
		{"NetworkSet", "name: partners, namespace: shop", Ref{KindNetworkSet, "shop", "partners"},
			func(o Object) bool { return o.NetworkSet != nil }},
		{"GlobalNetworkSet", "name: partners", Ref{KindGlobalNetworkSet, "", "partners"},
			func(o Object) bool { return o.GlobalNetworkSet != nil }},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			o, err := tabbyDecode(t, c.kind, tabbyDoc(c.kind, c.meta, ""))
			if err != nil {
				t.Fatal(err)
			}
			if o.Ref != c.want {
				t.Errorf("Ref = %+v, want %+v", o.Ref, c.want)
			}
			if !c.field(o) {
				t.Errorf("typed field for %s not set: %+v", c.kind, o)
			}
		})
	}
}

// Namespaces follow kubectl for every kind: a namespaced object without one is
// in "default", and a cluster-scoped object's namespace is ignored.
func TestDecodeTabbyNamespaceDefaults(t *testing.T) {
	cases := []struct {
		kind, meta string
		want       Ref
	}{
		{"NetworkPolicy", "name: web", Ref{Kind: KindTabbyNetworkPolicy, Namespace: "default", Name: "web"}},
		{"NetworkSet", "name: partners", Ref{Kind: KindNetworkSet, Namespace: "default", Name: "partners"}},
		{"NetworkSet", "name: partners, namespace: shop", Ref{Kind: KindNetworkSet, Namespace: "shop", Name: "partners"}},
		{"GlobalNetworkSet", "name: partners, namespace: shop", Ref{Kind: KindGlobalNetworkSet, Name: "partners"}},
	}
	for _, c := range cases {
		o, err := tabbyDecode(t, c.kind, tabbyDoc(c.kind, c.meta, ""))
		if err != nil {
			t.Fatalf("%s {%s}: %v", c.kind, c.meta, err)
		}
		if o.Ref != c.want {
			t.Errorf("%s {%s}: ref %+v, want %+v", c.kind, c.meta, o.Ref, c.want)
		}
	}
}

func TestDecodeTabbyErrors(t *testing.T) {
	cases := []struct {
		name, kind, doc string
		want            []string // FieldError.Error() of each error, in order
	}{
		{
			name: "unknown spec field", kind: "NetworkPolicy",
			doc:  tabbyDoc("NetworkPolicy", "name: web, namespace: shop", "selectr: all()"),
			want: []string{`t.yaml (document 1): tabby.dev/NetworkPolicy shop/web: json: unknown field "selectr"`},
		},
		{
			name: "namespaceSelector is GlobalNetworkPolicy only", kind: "NetworkPolicy",
			doc:  tabbyDoc("NetworkPolicy", "name: web, namespace: shop", "namespaceSelector: all()"),
			want: []string{`t.yaml (document 1): tabby.dev/NetworkPolicy shop/web: json: unknown field "namespaceSelector"`},
		},
		{
			name: "unknown rule field", kind: "GlobalNetworkPolicy",
			doc:  tabbyDoc("GlobalNetworkPolicy", "name: web", "ingress: [{action: Allow, source: {net: [10.0.0.0/8]}}]"),
			want: []string{`t.yaml (document 1): tabby.dev/GlobalNetworkPolicy web: json: unknown field "net"`},
		},
		{
			name: "missing name", kind: "Tier",
			doc:  tabbyDoc("Tier", "", "order: 1"),
			want: []string{`t.yaml (document 1): metadata.name: is required`},
		},
		{
			name: "tier name is a DNS label", kind: "Tier",
			doc:  tabbyDoc("Tier", "name: a.b", "order: 1"),
			want: []string{`t.yaml (document 1): tabby.dev/Tier a.b: metadata.name: "a.b" is not a DNS-1123 label: must not contain dots`},
		},
		{
			name: "wrong apiVersion", kind: "Tier",
			doc:  "apiVersion: tabby.dev/v1\nkind: Tier\nmetadata: {name: security}\nspec: {order: 1}\n",
			want: []string{`t.yaml (document 1): tabby.dev/Tier security: apiVersion: "tabby.dev/v1" is not tabby.dev/v1alpha1`},
		},
		{
			name: "unknown kind", kind: "Profile",
			doc:  tabbyDoc("Profile", "name: x", ""),
			want: []string{`t.yaml (document 1): kind: unknown kind "Profile" in tabby.dev/v1alpha1 (want Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet or GlobalNetworkSet)`},
		},
		{
			name: "protocol is a float", kind: "GlobalNetworkPolicy",
			doc:  tabbyDoc("GlobalNetworkPolicy", "name: web", "ingress: [{action: Allow, protocol: 1.5}]"),
			want: []string{`t.yaml (document 1): tabby.dev/GlobalNetworkPolicy web: invalid protocol 1.5: must be an integer or a string`},
		},
		{
			name: "port is a bool", kind: "GlobalNetworkPolicy",
			doc:  tabbyDoc("GlobalNetworkPolicy", "name: web", "ingress: [{action: Allow, protocol: TCP, destination: {ports: [true]}}]"),
			want: []string{`t.yaml (document 1): tabby.dev/GlobalNetworkPolicy web: invalid port true: must be an integer or a string`},
		},
		{
			name: "duplicate key", kind: "Tier",
			doc: "apiVersion: tabby.dev/v1alpha1\nkind: Tier\nmetadata: {name: security}\nspec: {order: 1, order: 2}\n",
			want: []string{`t.yaml (document 1): tabby.dev/Tier security: yaml: unmarshal errors:
  line 4: key "order" already set in map`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tabbyDecode(t, c.kind, c.doc)
			if err == nil {
				t.Fatal("decoded without error")
			}
			fes := tabbyFieldErrors(t, err)
			var got []string
			for _, fe := range fes {
				got = append(got, fe.Error())
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestDecodeTabbyWrapsCause(t *testing.T) {
	_, err := tabbyDecode(t, "GlobalNetworkPolicy",
		tabbyDoc("GlobalNetworkPolicy", "name: web", "ingress: [{action: Allow, protocol: [6]}]"))
	var ne *tabbyv1.NumOrStringError
	if !errors.As(err, &ne) || ne.What != "protocol" || ne.Value != "[6]" {
		t.Fatalf("errors.As(%v) = %+v, want a NumOrStringError for protocol [6]", err, ne)
	}
}

func TestDecodeTabbyTypeErrorField(t *testing.T) {
	_, err := tabbyDecode(t, "Tier", tabbyDoc("Tier", "name: security", "order: first"))
	fes := tabbyFieldErrors(t, err)
	var te *json.UnmarshalTypeError
	if len(fes) != 1 || fes[0].Field != "spec.order" || !errors.As(err, &te) {
		t.Errorf("err = %v, want one error at spec.order wrapping a *json.UnmarshalTypeError", err)
	}
}

func TestNumOrStringJSON(t *testing.T) {
	cases := []struct {
		in   string
		form tabbyv1.Form
		num  int64
		str  string
	}{
		{`80`, tabbyv1.FormNumber, 80, ""},
		{`70000`, tabbyv1.FormNumber, 70000, ""}, // decodes; validation rejects the range
		{`-1`, tabbyv1.FormNumber, -1, ""},
		{`"80"`, tabbyv1.FormString, 0, "80"},
		{`"8000:8080"`, tabbyv1.FormString, 0, "8000:8080"},
		{`"http"`, tabbyv1.FormString, 0, "http"},
	}
	for _, c := range cases {
		var p tabbyv1.Port
		if err := json.Unmarshal([]byte(c.in), &p); err != nil {
			t.Fatalf("Port %s: %v", c.in, err)
		}
		if p.Type != c.form || p.NumVal != c.num || p.StrVal != c.str {
			t.Errorf("Port %s = %+v", c.in, p)
		}
		if out, err := json.Marshal(p); err != nil || string(out) != c.in {
			t.Errorf("Port %s marshals to %s, %v", c.in, out, err)
		}
		var pr tabbyv1.Protocol
		if err := json.Unmarshal([]byte(c.in), &pr); err != nil {
			t.Fatalf("Protocol %s: %v", c.in, err)
		}
		if out, err := json.Marshal(pr); err != nil || string(out) != c.in {
			t.Errorf("Protocol %s marshals to %s, %v", c.in, out, err)
		}
	}
	for _, bad := range []string{`null`, `true`, `1.5`, `{}`, `[80]`, `1e3`} {
		var p tabbyv1.Port
		err := json.Unmarshal([]byte(bad), &p)
		var ne *tabbyv1.NumOrStringError
		if !errors.As(err, &ne) || ne.What != "port" {
			t.Errorf("Port %s: err = %v, want a NumOrStringError", bad, err)
		}
	}
	// A rule round-trips through JSON with each value in its written form.
	rule := tabbyv1.Rule{Action: tabbyv1.Allow, Protocol: &[]tabbyv1.Protocol{tabbyv1.ProtocolFromNumber(6)}[0],
		Destination: tabbyv1.EntityRule{Ports: []tabbyv1.Port{tabbyv1.PortFromNumber(80), tabbyv1.PortFromString("http")}}}
	out, err := json.Marshal(rule)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"action":"Allow","protocol":6,"source":{},"destination":{"ports":[80,"http"]}}`; string(out) != want {
		t.Errorf("rule marshals to %s, want %s", out, want)
	}
	var back tabbyv1.Rule
	if err := json.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back, rule) {
		t.Errorf("round trip = %+v, %v; want %+v", back, err, rule)
	}
}

func TestNormalizeTier(t *testing.T) {
	cases := []struct {
		name, meta, spec string
		want             Tier
		wantErr          string
	}{
		{name: "ordered", meta: "name: security", spec: "order: 100",
			want: Tier{Name: "security", Order: 100, DefaultAction: ActionDeny}},
		{name: "pass", meta: "name: security", spec: "order: -2.5, defaultAction: Pass",
			want: Tier{Name: "security", Order: -2.5, DefaultAction: ActionPass}},
		{name: "explicit deny", meta: "name: security", spec: "order: 0, defaultAction: Deny",
			want: Tier{Name: "security", Order: 0, DefaultAction: ActionDeny}},
		{name: "default tier may set its action", meta: "name: default", spec: "defaultAction: Pass",
			want: Tier{Name: "default", Order: 1_000_000, DefaultAction: ActionPass}},
		{name: "default tier with its own order", meta: "name: default", spec: "order: 1000000",
			want: Tier{Name: "default", Order: 1_000_000, DefaultAction: ActionDeny}},
		{name: "order required", meta: "name: security", spec: "",
			wantErr: "t.yaml (document 1): tabby.dev/Tier security: spec.order: is required"},
		{name: "default tier order is fixed", meta: "name: default", spec: "order: 5",
			wantErr: `t.yaml (document 1): tabby.dev/Tier default: spec.order: the order of tier "default" is fixed at 1000000`},
		{name: "bad action", meta: "name: security", spec: "order: 1, defaultAction: Allow",
			wantErr: `t.yaml (document 1): tabby.dev/Tier security: spec.defaultAction: "Allow" is not Deny or Pass`},
		{name: "reserved name", meta: "name: kubernetes", spec: "order: 1",
			wantErr: `t.yaml (document 1): tabby.dev/Tier kubernetes: metadata.name: tier name "kubernetes" is reserved for a built-in tier`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := tabbyDecode(t, "Tier", tabbyDoc("Tier", c.meta, c.spec))
			if err != nil {
				t.Fatal(err)
			}
			got, err := normalizeTier(o)
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("err = %v, want %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.want.Ref = o.Ref
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestNormalizeNetworkSet(t *testing.T) {
	c := tabbyTestCluster()
	o, err := tabbyDecode(t, "NetworkSet", tabbyDoc("NetworkSet",
		"name: partners, namespace: shop, labels: {role: partner}",
		"nets: [192.0.2.7/24, 2001:db8::1, 10.1.2.3]"))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := normalizeNetworkSet(o, c)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := selectors.Map{
		"role": "partner", "tabby:kind": "networkset", "tabby:namespace": "shop",
		"ns:team": "a", "ns:kubernetes.io/metadata.name": "shop",
	}
	if !reflect.DeepEqual(ns.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", ns.Labels, wantLabels)
	}
	wantNets := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("10.1.2.3/32")}
	if !reflect.DeepEqual(ns.Nets, wantNets) {
		t.Errorf("nets = %v, want %v", ns.Nets, wantNets)
	}
	if ns.Ref != o.Ref {
		t.Errorf("Ref = %v", ns.Ref)
	}

	// A namespace the cluster does not know still gets its implied name label.
	o, _ = tabbyDecode(t, "NetworkSet", tabbyDoc("NetworkSet", "name: x, namespace: ghost", ""))
	ns, err = normalizeNetworkSet(o, c)
	if err != nil || ns.Labels["ns:kubernetes.io/metadata.name"] != "ghost" || ns.Labels["ns:team"] != "" {
		t.Errorf("unknown namespace: %v, %v", ns.Labels, err)
	}

	o, _ = tabbyDecode(t, "GlobalNetworkSet", tabbyDoc("GlobalNetworkSet", "name: partners, labels: {role: partner}",
		"nets: [198.51.100.0/24]"))
	gs, err := normalizeNetworkSet(o, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := (selectors.Map{"role": "partner", "tabby:kind": "globalnetworkset"}); !reflect.DeepEqual(gs.Labels, want) {
		t.Errorf("global labels = %v, want %v", gs.Labels, want)
	}
	if !selectors.Global().Matches(gs.Labels) {
		t.Error("global() does not match a GlobalNetworkSet")
	}

	o, _ = tabbyDecode(t, "GlobalNetworkSet", tabbyDoc("GlobalNetworkSet",
		`name: bad, labels: {"tabby:namespace": shop}`, `nets: [10.0.0.0/33, "::ffff:10.0.0.1", "fe80::1%eth0", 10.0.0.0/8]`))
	_, err = normalizeNetworkSet(o, c)
	var got []string
	for _, fe := range tabbyFieldErrors(t, err) {
		got = append(got, fe.Field+": "+fe.Reason)
	}
	want := []string{
		`metadata.labels: key "tabby:namespace": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
		`spec.nets[0]: invalid network "10.0.0.0/33": want a CIDR (10.0.0.0/8) or an address`,
		`spec.nets[1]: invalid network "::ffff:10.0.0.1": IPv4-mapped IPv6 address; write it as IPv4`,
		`spec.nets[2]: invalid network "fe80::1%eth0": want a CIDR (10.0.0.0/8) or an address`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
}

func TestTabbyPolicyDefaults(t *testing.T) {
	p := tabbyMustPolicy(t, "np", "")
	if p.Tier != "default" || !math.IsInf(p.Order, 1) || !p.Ingress || p.Egress {
		t.Errorf("empty policy: tier %q order %v ingress %v egress %v", p.Tier, p.Order, p.Ingress, p.Egress)
	}
	if p.Ref != (Ref{KindTabbyNetworkPolicy, "shop", "web"}) {
		t.Errorf("Ref = %v", p.Ref)
	}

	p = tabbyMustPolicy(t, "np", "tier: security, order: 10.5, egress: [{action: Deny}]")
	if p.Tier != "security" || p.Order != 10.5 || !p.Ingress || !p.Egress || len(p.EgressRules) != 1 {
		t.Errorf("egress rules: %+v", p)
	}

	p = tabbyMustPolicy(t, "gnp", "types: [Egress]")
	if p.Ingress || !p.Egress {
		t.Errorf("explicit types [Egress]: ingress %v egress %v", p.Ingress, p.Egress)
	}
	p = tabbyMustPolicy(t, "gnp", "types: [Egress, Ingress], ingress: [{action: Allow}]")
	if !p.Ingress || !p.Egress {
		t.Errorf("explicit types [Egress, Ingress]: ingress %v egress %v", p.Ingress, p.Egress)
	}
}

func TestTabbySubject(t *testing.T) {
	type subj struct {
		name   string
		labels selectors.Map
	}
	webShop := subj{"web in shop", tabbyPod("shop", "api", nil, "app", "web")}
	webOther := subj{"web in other", tabbyPod("other", "api", nil, "app", "web")}
	webShopSA := subj{"web in shop as backend", tabbyPod("shop", "api", map[string]string{"tier": "backend"}, "app", "web")}
	webSet := subj{"network set labelled web", selectors.Map{"app": "web", "tabby:kind": "networkset", "tabby:namespace": "shop"}}
	cases := []struct {
		which, spec string
		match       []subj
		noMatch     []subj
	}{
		{"np", `selector: app == "web"`, []subj{webShop, webShopSA}, []subj{webOther, webSet}},
		{"np", "", []subj{webShop}, []subj{webOther, webSet}},
		{"gnp", `selector: app == "web"`, []subj{webShop, webOther}, []subj{webSet}},
		{"gnp", `namespaceSelector: team == "b"`, []subj{webOther}, []subj{webShop, webSet}},
		{"np", `serviceAccountSelector: tier == "backend"`, []subj{webShopSA}, []subj{webShop, webOther}},
	}
	for _, c := range cases {
		p := tabbyMustPolicy(t, c.which, c.spec)
		for _, s := range c.match {
			if !p.Subject.Matches(s.labels) {
				t.Errorf("%s {%s}: Subject %s does not match %s", c.which, c.spec, p.Subject, s.name)
			}
		}
		for _, s := range c.noMatch {
			if p.Subject.Matches(s.labels) {
				t.Errorf("%s {%s}: Subject %s matches %s", c.which, c.spec, p.Subject, s.name)
			}
		}
	}
}

// tabbyPod builds a pod's labels the way the endpoint normaliser does: its
// labels plus the reserved keys, its namespace's labels from the test cluster
// and its service account's labels.
func tabbyPod(ns, sa string, saLabels map[string]string, kv ...string) selectors.Map {
	m := selectors.Map{"tabby:kind": "pod", "tabby:namespace": ns, "tabby:serviceaccount": sa}
	for k, v := range tabbyTestCluster().Namespaces[ns] {
		m["ns:"+k] = v
	}
	for k, v := range saLabels {
		m["sa:"+k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestTabbyLogPrefix(t *testing.T) {
	p := tabbyMustPolicy(t, "np", "ingress: [{action: Allow}, {action: Log}], egress: [{action: Log}]")
	if got := p.IngressRules[1].LogPrefix; got != "tabby shop/web ingress[1]: " {
		t.Errorf("ingress log prefix = %q", got)
	}
	if got := p.EgressRules[0].LogPrefix; got != "tabby shop/web egress[0]: " {
		t.Errorf("egress log prefix = %q", got)
	}
	if got := p.IngressRules[0].LogPrefix; got != "" {
		t.Errorf("Allow rule has log prefix %q", got)
	}
	g := tabbyMustPolicy(t, "gnp", "ingress: [{action: Log}]")
	if got := g.IngressRules[0].LogPrefix; got != "tabby web ingress[0]: " {
		t.Errorf("global log prefix = %q", got)
	}

	long1 := strings.Repeat("a", 200)
	long2 := strings.Repeat("a", 199) + "b"
	a, b := tabbyLogPrefix(long1, Egress, 12), tabbyLogPrefix(long2, Egress, 12)
	if len(a) != tabbyLogPrefixMax || len(b) != tabbyLogPrefixMax {
		t.Errorf("long prefixes have lengths %d, %d; want %d", len(a), len(b), tabbyLogPrefixMax)
	}
	if a == b || !strings.HasPrefix(a, "tabby aaaa") || !strings.HasSuffix(a, " egress[12]: ") {
		t.Errorf("long prefixes not distinct or malformed: %q / %q", a, b)
	}
	if tabbyLogPrefix(long1, Egress, 12) != a {
		t.Error("log prefix is not deterministic")
	}
}
