package selectors

import (
	"fmt"
	"math/rand"
	"testing"
)

const (
	benchSubjects   = 10000
	benchSelectors  = 4000
	benchNamespaces = 100
	benchApps       = 20
	benchTeams      = 10
)

func benchLabels(i, app int) Map {
	ns := i % benchNamespaces
	return Map{
		KeyKind:             "pod",
		KeyNamespace:        fmt.Sprintf("ns-%d", ns),
		KeyServiceAccount:   "default",
		"app":               fmt.Sprintf("web-%d", app),
		"pod-template-hash": fmt.Sprintf("h%d", i%7),
		NamespaceLabelPrefix + "kubernetes.io/metadata.name": fmt.Sprintf("ns-%d", ns),
		NamespaceLabelPrefix + "team":                        fmt.Sprintf("team-%d", ns%benchTeams),
	}
}

// benchSelector returns the i-th selector of a policy-like population: 70%
// pod selectors of one app in one namespace, 15% namespace selectors over ns:
// keys, 14.5% whole-namespace selectors, 0.5% all().
func benchSelector(i int) *Selector {
	ns, app, team := i%benchNamespaces, (i/benchNamespaces)%benchApps, i%benchTeams
	switch r := i % 200; {
	case r < 140:
		return MustParse(fmt.Sprintf(`tabby:kind == "pod" && tabby:namespace == "ns-%d" && app == "web-%d"`, ns, app))
	case r < 170:
		nsSel := WithKeyPrefix(MustParse(fmt.Sprintf(`team == "team-%d"`, team)), NamespaceLabelPrefix)
		return And(nsSel, MustParse(fmt.Sprintf(`app == "web-%d"`, app)))
	case r < 199:
		return MustParse(fmt.Sprintf(`tabby:namespace == "ns-%d" && !has(quarantine)`, ns))
	}
	return All()
}

func benchIndex(b *testing.B) (*Index[int, int], *int) {
	b.Helper()
	events := new(int)
	ix := NewIndex(func(Event[int, int]) { *events++ })
	for i := 0; i < benchSubjects; i++ {
		ix.UpdateLabels(i, benchLabels(i, i%benchApps))
	}
	for i := 0; i < benchSelectors; i++ {
		ix.UpdateSelector(i, benchSelector(i))
	}
	return ix, events
}

// BenchmarkIndexLabelUpdate measures label changes on a populated index:
// "relabel" changes one pod's app label, "churn" deletes a pod and adds it
// back (a new subject also evaluates the selectors matching empty labels).
func BenchmarkIndexLabelUpdate(b *testing.B) {
	b.Run("relabel", func(b *testing.B) {
		ix, events := benchIndex(b)
		rng := rand.New(rand.NewSource(1))
		apps := make([]int, benchSubjects)
		for i := range apps {
			apps[i] = i % benchApps
		}
		*events = 0
		n := 0
		for b.Loop() {
			i := rng.Intn(benchSubjects)
			apps[i] = (apps[i] + 1 + rng.Intn(benchApps-1)) % benchApps
			ix.UpdateLabels(i, benchLabels(i, apps[i]))
			n++
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(float64(*events)/float64(n), "events/op")
	})
	b.Run("churn", func(b *testing.B) {
		ix, events := benchIndex(b)
		rng := rand.New(rand.NewSource(1))
		*events = 0
		n := 0
		for b.Loop() {
			i := rng.Intn(benchSubjects)
			ix.DeleteLabels(i)
			ix.UpdateLabels(i, benchLabels(i, i%benchApps))
			n++
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(float64(*events)/float64(n), "events/op")
	})
}

// BenchmarkIndexSelectorAdd measures replacing a selector in a populated
// index: "anchored" selectors are narrowed to subjects carrying a required
// key=value, "unanchored" ones (only negative conditions) scan every subject.
func BenchmarkIndexSelectorAdd(b *testing.B) {
	b.Run("anchored", func(b *testing.B) {
		ix, _ := benchIndex(b)
		// benchSelectors+1 shapes: slot i%benchSelectors always gets a
		// selector different from the one it holds.
		shapes := make([]*Selector, benchSelectors+1)
		for i := range shapes {
			shapes[i] = benchSelector(i + 7)
		}
		i := 0
		for b.Loop() {
			ix.UpdateSelector(i%benchSelectors, shapes[i%len(shapes)])
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "selectors/s")
	})
	b.Run("unanchored", func(b *testing.B) {
		ix, _ := benchIndex(b)
		shapes := make([]*Selector, 101)
		for i := range shapes {
			shapes[i] = MustParse(fmt.Sprintf(`tabby:namespace != "ns-%d" && !has(quarantine)`, i))
		}
		// Fill the slots first so every iteration is a replacement (with
		// ~100 stopped and ~100 started events), not a first add.
		for j := 0; j < 100; j++ {
			ix.UpdateSelector(-1-j, shapes[j])
		}
		i := 0
		for b.Loop() {
			ix.UpdateSelector(-1-i%100, shapes[(i+100)%len(shapes)])
			i++
		}
		b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "selectors/s")
	})
}
