package perf

import (
	"bytes"
	"cmp"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// The rendered objects normalise back to the model's endpoints: same pods,
// labels (reserved keys included), addresses, ports and nodes.
func TestRenderModelRoundTrip(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		m := synth.Generate(synth.Small(seed))
		objs, nss := RenderModel(m)
		got, errs := policy.Normalize(objs)
		if len(errs) > 0 {
			t.Fatalf("seed %d: %v", seed, errors.Join(errs...))
		}
		byRef := func(eps []policy.Endpoint) []policy.Endpoint {
			s := slices.Clone(eps)
			slices.SortFunc(s, func(a, b policy.Endpoint) int {
				return cmp.Or(cmp.Compare(a.Ref.Namespace, b.Ref.Namespace), cmp.Compare(a.Ref.Name, b.Ref.Name))
			})
			return s
		}
		want, have := byRef(m.Endpoints), byRef(got.Endpoints)
		if len(want) != len(have) {
			t.Fatalf("seed %d: %d endpoints, want %d", seed, len(have), len(want))
		}
		for i := range want {
			w, h := want[i], have[i]
			if w.Ref != h.Ref || w.Node != h.Node || !slices.Equal(w.IPs, h.IPs) || !slices.Equal(sortedPorts(w.Ports), sortedPorts(h.Ports)) ||
				!maps.Equal(w.Labels, h.Labels) {
				t.Errorf("seed %d: endpoint %v:\n got %+v\nwant %+v", seed, w.Ref, h, w)
			}
		}
		if len(nss) == 0 || nss[0].Name != "kube-system" || !slices.Contains(nss[0].Apps, "kube-dns") {
			t.Errorf("seed %d: namespaces %+v", seed, nss)
		}
	}
}

// sortedPorts orders ports as policy/ does (synth leaves the DNS pod's
// in declaration order).
func sortedPorts(ps []policy.ContainerPort) []policy.ContainerPort {
	s := slices.Clone(ps)
	slices.SortFunc(s, func(a, b policy.ContainerPort) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
	})
	return s
}

// Generated policies are valid, deterministic and encode to YAML that
// decodes to the same objects.
func TestGeneratePoliciesEncode(t *testing.T) {
	objs, nss := RenderModel(synth.Generate(synth.Small(4)))
	pols := GeneratePolicies(nss, 60, 9)
	if len(pols) != 60 {
		t.Fatalf("%d policies, want 60", len(pols))
	}
	all := append(slices.Clone(objs), pols...)
	sortObjects(all)
	m, errs := policy.Normalize(all)
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if len(m.Policies) != 60 {
		t.Errorf("%d normalised policies, want 60", len(m.Policies))
	}
	a, err := policy.Encode(all)
	if err != nil {
		t.Fatal(err)
	}
	// Same arguments, same bytes: the benchmarks' manifests are
	// reproducible.
	objs2, nss2 := RenderModel(synth.Generate(synth.Small(4)))
	all2 := append(objs2, GeneratePolicies(nss2, 60, 9)...)
	sortObjects(all2)
	again, err := policy.Encode(all2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, again) {
		t.Error("rendering and encoding are not deterministic")
	}
	dec, err := policy.Decode("cluster.yaml", a)
	if err != nil {
		t.Fatal(err)
	}
	if len(dec) != len(all) {
		t.Fatalf("decoded %d objects, want %d", len(dec), len(all))
	}
	for i := range dec {
		if dec[i].Ref != all[i].Ref {
			t.Fatalf("object %d: decoded %v, want %v", i, dec[i].Ref, all[i].Ref)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := Percentile(ds, c.q); got != c.want {
			t.Errorf("p%v = %v, want %v", c.q, got, c.want)
		}
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("empty")
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its input")
	}
}
