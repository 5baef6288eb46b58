package v1alpha1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func intp(v int) *int           { return &v }
func floatp(v float64) *float64 { return &v }

func fullRule() Rule {
	tcp := ProtocolFromName("TCP")
	udp := ProtocolFromNumber(17)
	return Rule{
		Action: Allow, IPVersion: intp(4), Protocol: &tcp, NotProtocol: &udp,
		ICMP: &ICMPFields{Type: intp(8), Code: intp(0)}, NotICMP: &ICMPFields{Type: intp(3)},
		Source: EntityRule{Nets: []string{"10.0.0.0/8"}, NotNets: []string{"10.1.0.0/16"}, Selector: "a == 'b'",
			Ports: []Port{PortFromNumber(80)}, NotPorts: []Port{PortFromString("81:82")},
			ServiceAccounts: &ServiceAccountMatch{Names: []string{"api"}, Selector: "x == 'y'"}},
		Destination: EntityRule{Nets: []string{"192.0.2.0/24"}, Ports: []Port{PortFromString("http")}},
	}
}

func TestDeepCopy(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"a": "b"}}
	status := PolicyStatus{ObservedGeneration: 2, Conditions: []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Valid", Message: "ok"}}}
	np := &NetworkPolicy{ObjectMeta: meta, Spec: NetworkPolicySpec{Tier: "t", Order: floatp(1),
		Types: []PolicyType{PolicyTypeIngress}, Ingress: []Rule{fullRule()}, Egress: []Rule{fullRule()}},
		Status: status}
	gnp := &GlobalNetworkPolicy{ObjectMeta: meta, Spec: GlobalNetworkPolicySpec{Order: floatp(2),
		NamespaceSelector: "all()", Types: []PolicyType{PolicyTypeEgress}, Egress: []Rule{fullRule()}},
		Status: *status.DeepCopy()}
	objs := []runtime.Object{
		&Tier{ObjectMeta: meta, Spec: TierSpec{Order: floatp(3), DefaultAction: TierPass}},
		np, gnp,
		&NetworkSet{ObjectMeta: meta, Spec: NetworkSetSpec{Nets: []string{"10.0.0.0/8"}}},
		&GlobalNetworkSet{ObjectMeta: meta, Spec: NetworkSetSpec{Nets: []string{"10.0.0.0/8"}}},
		&TierList{Items: []Tier{{ObjectMeta: meta, Spec: TierSpec{Order: floatp(3)}}}},
		&NetworkPolicyList{Items: []NetworkPolicy{*np}},
		&GlobalNetworkPolicyList{Items: []GlobalNetworkPolicy{*gnp}},
		&NetworkSetList{Items: []NetworkSet{{Spec: NetworkSetSpec{Nets: []string{"x"}}}}},
		&GlobalNetworkSetList{Items: []GlobalNetworkSet{{Spec: NetworkSetSpec{Nets: []string{"x"}}}}},
	}
	for _, o := range objs {
		before, _ := json.Marshal(o)
		c := o.DeepCopyObject()
		if !reflect.DeepEqual(c, o) {
			t.Errorf("%T: copy differs", o)
		}
		// Scribble over every pointer, slice and map of the copy; the
		// original must not change.
		scribble(reflect.ValueOf(c))
		if after, _ := json.Marshal(o); string(after) != string(before) {
			t.Errorf("%T: copy shares memory with the original:\n%s\n%s", o, before, after)
		}
	}
}

// scribble overwrites every reachable scalar through pointers, slices and maps.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			v.SetMapIndex(k, reflect.ValueOf("scribbled"))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString("scribbled")
		}
	case reflect.Int, reflect.Int64:
		if v.CanSet() {
			v.SetInt(-7)
		}
	case reflect.Float64:
		if v.CanSet() {
			v.SetFloat(-7)
		}
	}
}

func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{KindTier, KindNetworkPolicy, KindGlobalNetworkPolicy, KindNetworkSet, KindGlobalNetworkSet} {
		for _, kind := range []string{k, k + "List"} {
			if !s.Recognizes(SchemeGroupVersion.WithKind(kind)) {
				t.Errorf("scheme does not know %s", kind)
			}
		}
	}
}

// TestStatusOmittedWhenEmpty: a policy without status marshals without a
// status key (omitzero), so objects written back to files (e2e/lab) are
// unchanged by the field's existence.
func TestStatusOmittedWhenEmpty(t *testing.T) {
	for _, o := range []any{&NetworkPolicy{}, &GlobalNetworkPolicy{}} {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["status"]; ok {
			t.Errorf("%T marshals an empty status: %s", o, b)
		}
	}
	np := &NetworkPolicy{Status: PolicyStatus{ObservedGeneration: 1}}
	if b, _ := json.Marshal(np); !strings.Contains(string(b), `"status":{"observedGeneration":1}`) {
		t.Errorf("status lost: %s", b)
	}
}
