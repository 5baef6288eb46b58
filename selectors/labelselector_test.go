package selectors

import (
	"errors"
	"math/rand"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestFromLabelSelectorNil(t *testing.T) {
	s, err := FromLabelSelector(nil)
	if s != nil || err != nil {
		t.Fatalf("nil selector: got (%v, %v), want (nil, nil)", s, err)
	}
}

func TestFromLabelSelectorForms(t *testing.T) {
	cases := []struct {
		ls   metav1.LabelSelector
		want string // parsed for comparison
	}{
		{metav1.LabelSelector{}, `all()`},
		{metav1.LabelSelector{MatchLabels: map[string]string{}}, `all()`},
		{metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": ""}}, `app == "web" && tier == ""`},
		{metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod", "dev", "prod"}},
			{Key: "k8s.io/role", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"x"}},
			{Key: "a", Operator: metav1.LabelSelectorOpExists},
			{Key: "b", Operator: metav1.LabelSelectorOpDoesNotExist},
		}}, `env in {"dev", "prod"} && k8s.io/role not in {"x"} && has(a) && !has(b)`},
		{metav1.LabelSelector{
			MatchLabels:      map[string]string{"app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}},
		}, `app == "web" && has(app)`},
	}
	for _, c := range cases {
		got, err := FromLabelSelector(&c.ls)
		if err != nil {
			t.Errorf("%+v: %v", c.ls, err)
			continue
		}
		if want := MustParse(c.want); got.ID() != want.ID() {
			t.Errorf("%+v = %s, want %s", c.ls, got, want)
		}
	}
}

func TestFromLabelSelectorErrors(t *testing.T) {
	req := func(key string, op metav1.LabelSelectorOperator, vs ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: vs}
	}
	exprs := func(rs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: append([]metav1.LabelSelectorRequirement{req("ok", metav1.LabelSelectorOpExists)}, rs...)}
	}
	cases := []struct {
		ls     *metav1.LabelSelector
		field  string
		reason string // substring
	}{
		{exprs(req("a", metav1.LabelSelectorOpIn)), "matchExpressions[1].values", "must be specified"},
		{exprs(req("a", metav1.LabelSelectorOpNotIn)), "matchExpressions[1].values", "must be specified"},
		{exprs(req("a", metav1.LabelSelectorOpExists, "x")), "matchExpressions[1].values", "may not be specified"},
		{exprs(req("a", metav1.LabelSelectorOpDoesNotExist, "x")), "matchExpressions[1].values", "may not be specified"},
		{exprs(req("a", "Equals", "x")), "matchExpressions[1].operator", `"Equals"`},
		{exprs(req("a", "")), "matchExpressions[1].operator", "not a valid selector operator"},
		{exprs(req("bad key", metav1.LabelSelectorOpExists)), "matchExpressions[1].key", `invalid label key "bad key"`},
		{exprs(req("", metav1.LabelSelectorOpExists)), "matchExpressions[1].key", "invalid label key"},
		{exprs(req("tabby:namespace", metav1.LabelSelectorOpExists)), "matchExpressions[1].key", "invalid label key"},
		{exprs(req("a", metav1.LabelSelectorOpIn, "ok", "not ok")), "matchExpressions[1].values[1]", `invalid label value "not ok"`},
		{exprs(req("a", metav1.LabelSelectorOpIn, strings.Repeat("x", 64))), "matchExpressions[1].values[0]", "63"},
		{&metav1.LabelSelector{MatchLabels: map[string]string{"good": "v", "-bad": "v"}}, "matchLabels[-bad]", "invalid label key"},
		{&metav1.LabelSelector{MatchLabels: map[string]string{"a": "v/"}}, "matchLabels[a]", `invalid label value "v/"`},
	}
	for _, c := range cases {
		s, err := FromLabelSelector(c.ls)
		if err == nil {
			t.Errorf("%+v = %s, want an error", c.ls, s)
			continue
		}
		var lse *LabelSelectorError
		if !errors.As(err, &lse) {
			t.Errorf("%+v: error %T is not a *LabelSelectorError", c.ls, err)
			continue
		}
		if lse.Field != c.field || !strings.Contains(lse.Reason, c.reason) {
			t.Errorf("%+v: got field %q reason %q, want field %q reason containing %q", c.ls, lse.Field, lse.Reason, c.field, c.reason)
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("error text %q does not name the field", err)
		}
	}
}

// TestFromLabelSelectorMatchesKubernetes checks the conversion against
// apimachinery's own implementation of label selector semantics on random
// selectors and label sets.
func TestFromLabelSelectorMatchesKubernetes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	keys := []string{"a", "b", "example.com/c"}
	vals := []string{"1", "2", ""}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	randLabels := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			if rng.Intn(3) > 0 {
				m[k] = vals[rng.Intn(len(vals))]
			}
		}
		return m
	}
	for i := 0; i < 2000; i++ {
		ls := &metav1.LabelSelector{}
		if rng.Intn(2) == 0 {
			ls.MatchLabels = randLabels()
		}
		for n := rng.Intn(3); n > 0; n-- {
			r := metav1.LabelSelectorRequirement{Key: keys[rng.Intn(len(keys))], Operator: ops[rng.Intn(len(ops))]}
			if r.Operator == metav1.LabelSelectorOpIn || r.Operator == metav1.LabelSelectorOpNotIn {
				for m := 1 + rng.Intn(2); m > 0; m-- {
					r.Values = append(r.Values, vals[rng.Intn(len(vals))])
				}
			}
			ls.MatchExpressions = append(ls.MatchExpressions, r)
		}
		ours, err := FromLabelSelector(ls)
		if err != nil {
			t.Fatalf("%+v: %v", ls, err)
		}
		theirs, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatalf("%+v: apimachinery: %v", ls, err)
		}
		for j := 0; j < 10; j++ {
			l := randLabels()
			if got, want := ours.Matches(Map(l)), theirs.Matches(labels.Set(l)); got != want {
				t.Fatalf("%+v (%s) on %v: got %v, Kubernetes says %v", ls, ours, l, got, want)
			}
		}
		if again := MustParse(ours.String()); again.ID() != ours.ID() {
			t.Fatalf("%s does not round-trip", ours)
		}
	}
}

func TestWithKeyPrefix(t *testing.T) {
	if WithKeyPrefix(nil, NamespaceLabelPrefix) != nil {
		t.Error("nil selector should stay nil")
	}
	for _, in := range []string{`all()`, `global()`} {
		s := MustParse(in)
		if got := WithKeyPrefix(s, NamespaceLabelPrefix); got.ID() != s.ID() {
			t.Errorf("%s became %s", s, got)
		}
	}
	s := MustParse(`team == "a" && (has(env) || !z in {"1"}) && !global()`)
	p := WithKeyPrefix(s, NamespaceLabelPrefix)
	want := MustParse(`ns:team == "a" && (has(ns:env) || !ns:z in {"1"}) && !global()`)
	if p.ID() != want.ID() {
		t.Errorf("got %s, want %s", p, want)
	}
	for _, k := range p.Keys() {
		if k != KeyNamespace && !strings.HasPrefix(k, NamespaceLabelPrefix) {
			t.Errorf("key %q not prefixed", k)
		}
	}
	// Prefixing reorders siblings ("b" < "ns:a" but "a" < "b"): the result
	// must be canonical anyway.
	q := WithKeyPrefix(MustParse(`a == "1" && b == "1"`), NamespaceLabelPrefix)
	if MustParse(q.String()).String() != q.String() {
		t.Errorf("%s is not canonical", q)
	}
	// Semantics: the prefixed selector on prefixed labels equals the original.
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 500; i++ {
		sel := randSelector(rng, 3)
		l := randLabelMap(rng)
		pl := Map{}
		for k, v := range l {
			pl[NamespaceLabelPrefix+k] = v
			if k == KeyNamespace {
				pl[k] = v // global() still reads it unprefixed
			}
		}
		if got, want := WithKeyPrefix(sel, NamespaceLabelPrefix).Matches(pl), sel.Matches(l); got != want {
			t.Fatalf("%s on %v = %v but prefixed on %v = %v", sel, l, want, pl, got)
		}
	}
}
