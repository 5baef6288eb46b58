package scenario

import (
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

func TestLoadSteps(t *testing.T) {
	sc, err := Load("testdata/steps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Steps) != 2 || sc.Steps[0].Name != "denied" || sc.Steps[1].Name != "step 2" {
		t.Fatalf("steps: %+v", sc.Steps)
	}
	refs := func(objs []policy.Object) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.Ref.String())
		}
		return out
	}
	if got := strings.Join(refs(sc.Steps[0].Objects), ","); got != "Pod x/a,Pod x/b,NetworkPolicy x/p" {
		t.Errorf("step 1 objects: %s", got)
	}
	// The replaced policy keeps its place; the deleted pod is gone.
	s2 := sc.Steps[1]
	if got := strings.Join(refs(s2.Objects), ","); got != "Pod x/a,NetworkPolicy x/p" {
		t.Errorf("step 2 objects: %s", got)
	}
	if sel := s2.Objects[1].NetworkPolicy.Spec.PodSelector.MatchLabels["app"]; sel != "none" {
		t.Errorf("step 2 holds the old policy (app=%q)", sel)
	}
	if len(s2.Changes) != 2 || s2.Changes[0].Upsert == nil || s2.Changes[1].Delete == nil ||
		*s2.Changes[1].Delete != (policy.Ref{Kind: policy.KindPod, Namespace: "x", Name: "b"}) {
		t.Errorf("step 2 changes: %+v", s2.Changes)
	}
	if p, _ := ParseProtocol(s2.Expectation.Probes[0].Protocol); p != policy.ProtoUDP {
		t.Errorf("protocol %v", p)
	}
}

func TestExpected(t *testing.T) {
	f, tr := false, true
	full := ProbeExpectation{Port: 80, Default: &f, Expect: []Pattern{
		{From: "*/*", To: "x/b", Allowed: true},
		{From: "y/*", To: "x/b", Allowed: false},
	}}
	cases := []struct {
		from, to    string
		allowed, ok bool
	}{
		{"x/a", "x/b", true, true},  // first pattern
		{"y/a", "x/b", false, true}, // later pattern overrides
		{"x/b", "x/a", false, true}, // default
	}
	for _, c := range cases {
		if a, ok := full.Expected(c.from, c.to); a != c.allowed || ok != c.ok {
			t.Errorf("%s->%s: got %v,%v", c.from, c.to, a, ok)
		}
	}
	partial := ProbeExpectation{Port: 80, Expect: []Pattern{{From: "x/a", To: "*/b", Allowed: tr}}}
	if _, ok := partial.Expected("x/b", "x/a"); ok {
		t.Error("partial expectation claims an unnamed pair")
	}
	if a, ok := partial.Expected("x/a", "z/b"); !a || !ok {
		t.Error("partial expectation misses a named pair")
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load("testdata/bad-delete.yaml")
	if err == nil || !strings.Contains(err.Error(), "no earlier object Pod x/nope") {
		t.Errorf("got %v", err)
	}
}
