package crdcheck

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// TestCRDsAreAccepted runs the API server's validation of a CRD create on
// each file: structural schema, defaults, printer columns, and every CEL rule
// compiled in the v1.35 environment and within the static cost budget.
func TestCRDsAreAccepted(t *testing.T) {
	for kind, s := range crds(t) {
		crd := s.crd.DeepCopy()
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd)
		internal := &apiextensions.CustomResourceDefinition{}
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, internal, nil); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		for _, e := range crdvalidation.ValidateCustomResourceDefinition(context.Background(), internal) {
			t.Errorf("%s (%s): %v", kind, s.file, e)
		}
	}
}

// TestOneCRDPerKind checks the set of CRDs against the Go types: one per
// kind registered in tabbyv1's scheme, in group tabby.dev, one version
// v1alpha1 served and stored, with the scope package policy gives the kind,
// the status subresource on the policy kinds and TabbyNode only, and printer
// columns.
func TestOneCRDPerKind(t *testing.T) {
	s := runtime.NewScheme()
	if err := tabbyv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	// The kinds are the types of package tabbyv1 itself (the scheme also
	// holds metav1's WatchEvent and options types), less the List types.
	pkg := reflect.TypeFor[tabbyv1.Tier]().PkgPath()
	var want []string
	for kind, typ := range s.KnownTypes(tabbyv1.SchemeGroupVersion) {
		if typ.PkgPath() == pkg && !strings.HasSuffix(kind, "List") {
			want = append(want, kind)
		}
	}
	sort.Strings(want)
	all := crds(t)
	var have []string
	for k := range all {
		have = append(have, k)
	}
	sort.Strings(have)
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("CRDs for kinds %v, want one for each of %v", have, want)
	}

	scopes := map[string]apiextensionsv1.ResourceScope{
		tabbyv1.KindTier:                apiextensionsv1.ClusterScoped,
		tabbyv1.KindNetworkPolicy:       apiextensionsv1.NamespaceScoped,
		tabbyv1.KindGlobalNetworkPolicy: apiextensionsv1.ClusterScoped,
		tabbyv1.KindNetworkSet:          apiextensionsv1.NamespaceScoped,
		tabbyv1.KindGlobalNetworkSet:    apiextensionsv1.ClusterScoped,
		tabbyv1.KindTabbyNode:           apiextensionsv1.ClusterScoped,
	}
	columns := map[string][]string{
		tabbyv1.KindTier:                {"Order", "Default Action", "Age"},
		tabbyv1.KindNetworkPolicy:       {"Tier", "Order", "Selector", "Age"},
		tabbyv1.KindGlobalNetworkPolicy: {"Tier", "Order", "Selector", "Namespace Selector", "Age"},
		tabbyv1.KindNetworkSet:          {"First Net", "Nets", "Age"},
		tabbyv1.KindGlobalNetworkSet:    {"First Net", "Nets", "Age"},
		tabbyv1.KindTabbyNode:           {"Ready", "Policies", "Local", "Endpoints", "Errors", "Last Sync", "Age"},
	}
	for kind, sv := range all {
		crd := sv.crd
		if crd.Spec.Group != tabbyv1.GroupName {
			t.Errorf("%s: group %q", kind, crd.Spec.Group)
		}
		if crd.Spec.Scope != scopes[kind] {
			t.Errorf("%s: scope %s, want %s", kind, crd.Spec.Scope, scopes[kind])
		}
		if want := tabbyv1.GroupName + "_" + crd.Spec.Names.Plural + ".yaml"; sv.file != want {
			t.Errorf("%s: in %s, want %s", kind, sv.file, want)
		}
		v := crd.Spec.Versions[0]
		if v.Name != tabbyv1.SchemeGroupVersion.Version || !v.Served || !v.Storage {
			t.Errorf("%s: version %s served=%v storage=%v", kind, v.Name, v.Served, v.Storage)
		}
		hasStatus := v.Subresources != nil && v.Subresources.Status != nil
		isPolicy := kind == tabbyv1.KindNetworkPolicy || kind == tabbyv1.KindGlobalNetworkPolicy
		wantStatus := isPolicy || kind == tabbyv1.KindTabbyNode
		if hasStatus != wantStatus {
			t.Errorf("%s: status subresource %v, want %v", kind, hasStatus, wantStatus)
		}
		if isPolicy {
			st := v.Schema.OpenAPIV3Schema.Properties["status"]
			for _, f := range []string{"conditions", "observedGeneration"} {
				if _, ok := st.Properties[f]; !ok {
					t.Errorf("%s: status has no %s", kind, f)
				}
			}
		}
		var cols []string
		for _, c := range v.AdditionalPrinterColumns {
			cols = append(cols, c.Name)
		}
		if !reflect.DeepEqual(cols, columns[kind]) {
			t.Errorf("%s: printer columns %v, want %v", kind, cols, columns[kind])
		}
	}
}

// TestKustomization checks that deploy/crds/kustomization.yaml lists exactly
// the CRD files, in order.
func TestKustomization(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(crdDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, s := range crds(t) {
		files = append(files, s.file)
	}
	sort.Strings(files)
	if k.Kind != "Kustomization" || !reflect.DeepEqual(k.Resources, files) {
		t.Errorf("kustomization.yaml: kind %q, resources %v; want Kustomization with %v", k.Kind, k.Resources, files)
	}
}

// TestDefaults checks the defaults the CRDs apply, and that they are the
// normaliser's: a defaulted object means what the original meant.
func TestDefaults(t *testing.T) {
	cases := []struct {
		doc   string
		path  []string
		value any
	}{
		{"{apiVersion: tabby.dev/v1alpha1, kind: Tier, metadata: {name: default}}",
			[]string{"spec", "defaultAction"}, "Deny"},
		{"{apiVersion: tabby.dev/v1alpha1, kind: Tier, metadata: {name: t}, spec: {order: 5}}",
			[]string{"spec", "defaultAction"}, "Deny"},
		{"{apiVersion: tabby.dev/v1alpha1, kind: NetworkPolicy, metadata: {name: p, namespace: shop}}",
			[]string{"spec", "tier"}, "default"},
		{"{apiVersion: tabby.dev/v1alpha1, kind: GlobalNetworkPolicy, metadata: {name: p}, spec: {selector: all()}}",
			[]string{"spec", "tier"}, "default"},
		// An explicit empty tier is the normaliser's "default" too; the API
		// server keeps what was written.
		{"{apiVersion: tabby.dev/v1alpha1, kind: NetworkPolicy, metadata: {name: p, namespace: shop}, spec: {tier: ''}}",
			[]string{"spec", "tier"}, ""},
	}
	for _, c := range cases {
		u, errs := create(t, c.doc)
		if len(errs) > 0 {
			t.Errorf("%s: %v", c.doc, errs)
			continue
		}
		got, ok := nested(u.Object, c.path...)
		if !ok || got != c.value {
			t.Errorf("%s: %s = %v (set %v), want %v", c.doc, strings.Join(c.path, "."), got, ok, c.value)
		}
		before, errsBefore := normalise(t, "d.yaml", []string{c.doc})
		after, errsAfter := normalise(t, "d.yaml", []string{mustYAML(t, u.Object)})
		if len(errsBefore)+len(errsAfter) > 0 || before != after {
			t.Errorf("%s: defaulting changed its meaning:\n%v %v\n--- before\n%s--- after\n%s", c.doc, errsBefore, errsAfter, before, after)
		}
	}
}

// TestStatusIsDroppedOnCreate: with the status subresource, a create cannot
// set status (the agent writes it through /status), and policy ignores it.
func TestStatusIsDroppedOnCreate(t *testing.T) {
	doc := `{apiVersion: tabby.dev/v1alpha1, kind: NetworkPolicy, metadata: {name: p, namespace: shop},
	  status: {observedGeneration: 3, conditions: [{type: Accepted, status: "True", reason: Valid, message: ok,
	  lastTransitionTime: "2025-01-01T00:00:00Z"}]}}`
	u, errs := create(t, doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, ok := u.Object["status"]; ok {
		t.Errorf("status survived create: %v", u.Object["status"])
	}
	if _, byRef := normalise(t, "s.yaml", []string{doc}); len(byRef) > 0 {
		t.Errorf("policy rejects a policy with status: %v", byRef)
	}
}

func nested(obj map[string]any, path ...string) (any, bool) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func mustYAML(t testing.TB, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
