package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Encode is the inverse of Decode: every object of the policy testdata and of
// the conformance corpus (all kinds Tabby reads) survives a round trip, and
// encoding the decoded result again gives the same bytes.
func TestEncodeRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	corpus, _ := filepath.Glob("../e2e/testdata/conformance/*/_topology.yaml")
	files = append(files, corpus...)
	tabby, _ := filepath.Glob("../e2e/testdata/conformance/tabby/*.yaml")
	files = append(files, tabby...)
	kinds := map[Kind]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, _ := Decode(f, data) // invalid documents are dropped; the rest must round-trip
		var keep []Object
		for _, o := range objs {
			if o.Ref.Kind != "" {
				keep = append(keep, o)
				kinds[o.Ref.Kind] = true
			}
		}
		b, err := Encode(keep)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		back, err := Decode(f, b)
		if err != nil {
			t.Fatalf("%s: decoding the encoding: %v\n%s", f, err, b)
		}
		if len(back) != len(keep) {
			t.Fatalf("%s: %d objects back, want %d", f, len(back), len(keep))
		}
		for i := range keep {
			if back[i].Ref != keep[i].Ref {
				t.Errorf("%s: object %d is %s, want %s", f, i, back[i].Ref, keep[i].Ref)
			}
		}
		again, err := Encode(back)
		if err != nil || string(again) != string(b) {
			t.Errorf("%s: re-encoding differs (%v)", f, err)
		}
	}
	for _, k := range []Kind{KindNamespace, KindPod, KindK8sNetworkPolicy, KindClusterNetworkPolicy, KindTier,
		KindTabbyNetworkPolicy, KindGlobalNetworkPolicy, KindNetworkSet, KindGlobalNetworkSet} {
		if !kinds[k] {
			t.Errorf("no %s in the round-tripped inputs", k)
		}
	}
}

func TestEncodeEmptyObject(t *testing.T) {
	_, err := Encode([]Object{{Ref: Ref{Kind: KindTier, Name: "t"}}})
	if err == nil || !strings.Contains(err.Error(), "tabby.dev/Tier t") {
		t.Errorf("got %v", err)
	}
}
