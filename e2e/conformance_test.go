package e2e

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

// corpusFiles lists every scenario of the conformance corpus.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, suite := range []string{"k8s", "cnp", "tabby"} {
		fs, err := filepath.Glob(filepath.Join("testdata", "conformance", suite, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if !strings.HasPrefix(filepath.Base(f), "_") {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		t.Fatal("empty conformance corpus")
	}
	return files
}

// TestConformance checks every Expectation of every scenario against the
// matrix the tracer computes over the compiled ruleset.
func TestConformance(t *testing.T) {
	for _, f := range corpusFiles(t) {
		rel, _ := filepath.Rel(filepath.Join("testdata", "conformance"), f)
		t.Run(strings.TrimSuffix(rel, ".yaml"), func(t *testing.T) {
			t.Parallel()
			sc, err := scenario.Load(f)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			for _, step := range sc.Steps {
				if err := checkStep(step); err != nil {
					t.Errorf("%s: %s:\n%v\nupstream: %s", f, step.Name, err, sc.Upstream)
				}
			}
		})
	}
}

func checkStep(step scenario.Step) error {
	m, errs := policy.Normalize(step.Objects)
	if len(errs) > 0 {
		return fmt.Errorf("normalise: %v", errs)
	}
	s, err := sim.New(m)
	if err != nil {
		return err
	}
	mx, err := s.Matrix()
	if err != nil {
		return err
	}
	var problems []string
	for i, pe := range step.Expectation.Probes {
		proto, err := scenario.ParseProtocol(pe.Protocol)
		if err != nil {
			return err
		}
		var got []sim.Result
		for _, r := range mx.Results {
			if r.Port == pe.Port && r.Protocol == proto {
				got = append(got, r)
			}
		}
		if len(got) == 0 {
			problems = append(problems, fmt.Sprintf("probes[%d]: no pod declares %d/%s", i, pe.Port, proto))
			continue
		}
		// Every explicit pattern of a partial expectation must name a probe.
		if pe.Default == nil {
			for j, pat := range pe.Expect {
				found := false
				for _, r := range got {
					if scenario.Match(pat.From, r.From) && scenario.Match(pat.To, r.To) {
						found = true
						break
					}
				}
				if !found {
					problems = append(problems, fmt.Sprintf("probes[%d].expect[%d]: %s -> %s names no probe of %d/%s",
						i, j, pat.From, pat.To, pe.Port, proto))
				}
			}
		}
		var wrong []string
		for _, r := range got {
			want, known := pe.Expected(r.From, r.To)
			if known && want != r.Allowed {
				wrong = append(wrong, fmt.Sprintf("  %s -> %s %d/%s: expected %s, Tabby %s",
					r.From, r.To, r.Port, proto, verdict(want), verdict(r.Allowed)))
			}
		}
		if len(wrong) > 0 {
			sort.Strings(wrong)
			problems = append(problems, fmt.Sprintf("probes[%d] %d/%s: %d of %d probes differ:\n%s",
				i, pe.Port, proto, len(wrong), len(got), strings.Join(wrong, "\n")))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}
