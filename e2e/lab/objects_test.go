package lab

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

func dump(t *testing.T, objs []policy.Object) string {
	t.Helper()
	m, errs := policy.Normalize(objs)
	if len(errs) > 0 {
		t.Fatalf("normalise: %v", errs)
	}
	return m.Dump()
}

// TestEncodeRoundTrip: what the agents read back from the manifest file is
// what the lab was given, for every step of the whole conformance corpus
// (every kind Tabby reads occurs there).
func TestEncodeRoundTrip(t *testing.T) {
	all, err := filepath.Glob("../testdata/conformance/*/*.yaml")
	var files []string
	for _, f := range all {
		if !strings.HasPrefix(filepath.Base(f), "_") {
			files = append(files, f)
		}
	}
	if err != nil || len(files) == 0 {
		t.Fatalf("corpus: %v (%d files)", err, len(files))
	}
	kinds := map[policy.Kind]bool{}
	for _, f := range files {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range sc.Steps {
			b, err := encodeObjects(step.Objects)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			back, err := policy.Decode("lab.yaml", b)
			if err != nil {
				t.Fatalf("%s: %s: decoding what the lab wrote: %v", f, step.Name, err)
			}
			if got, want := dump(t, back), dump(t, step.Objects); got != want {
				t.Fatalf("%s: %s: model changed through the manifest file:\n--- got\n%s\n--- want\n%s", f, step.Name, got, want)
			}
			for _, o := range step.Objects {
				kinds[o.Ref.Kind] = true
			}
			// Same objects in another order: the same bytes.
			rev := slices.Clone(step.Objects)
			slices.Reverse(rev)
			if b2, _ := encodeObjects(rev); !bytes.Equal(b, b2) {
				t.Fatalf("%s: %s: encoding depends on the order of the objects", f, step.Name)
			}
		}
	}
	if len(kinds) < 6 {
		t.Errorf("the corpus exercised only %d kinds: %v", len(kinds), kinds)
	}
}

func TestPlaceObjects(t *testing.T) {
	objs := decode(t, pod("x", "a", "", "")+pod("x", "b", "node-2", "10.1.0.1"))
	p, err := makePlan(objs, 2)
	if err != nil {
		t.Fatal(err)
	}
	placed, err := placeObjects(objs, p, false)
	if err != nil {
		t.Fatal(err)
	}
	a := placed[0].Pod
	if a.Spec.NodeName != "node-1" || a.Status.PodIP != "10.244.1.10" || len(a.Status.PodIPs) != 1 {
		t.Errorf("x/a placed as node %q IP %q %v", a.Spec.NodeName, a.Status.PodIP, a.Status.PodIPs)
	}
	if objs[0].Pod.Spec.NodeName != "" || objs[0].Pod.Status.PodIP != "" {
		t.Error("placeObjects changed its input")
	}
	// Updates: relabelling is fine; new pods, other addresses, nodes or
	// ports are not.
	relabel := decode(t, strings.Replace(pod("x", "a", "", ""), "name: a}", "name: a, labels: {l: v}}", 1)+
		pod("x", "b", "", ""))
	if _, err := placeObjects(relabel, p, true); err != nil {
		t.Errorf("relabel: %v", err)
	}
	for name, y := range map[string]string{
		"new pod":   pod("x", "a", "", "") + pod("x", "z", "", ""),
		"moved":     pod("x", "a", "node-2", ""),
		"new IP":    pod("x", "a", "", "10.9.9.9"),
		"new ports": strings.Replace(pod("x", "a", "", ""), "containerPort: 53", "containerPort: 54", 1),
	} {
		var pce *PodChangeError
		if _, err := placeObjects(decode(t, y), p, true); !errors.As(err, &pce) {
			t.Errorf("%s: got %v, want a *PodChangeError", name, err)
		}
	}
}
