package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/e2e/kerneltest"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/policy"
)

// kernelShape is what we compare between our IR and the kernel's readback:
// chain names with their rule counts, sets and maps with element counts.
func irShape(t *ir.Table) []string {
	var out []string
	for _, c := range t.Chains {
		out = append(out, fmt.Sprintf("chain %s rules=%d", c.Name, len(c.Rules)))
	}
	for _, s := range t.Sets {
		out = append(out, fmt.Sprintf("set %s", s.Name))
	}
	for _, m := range t.Maps {
		out = append(out, fmt.Sprintf("map %s elements=%d", m.Name, len(m.Entries)))
	}
	sort.Strings(out)
	return out
}

// kernelShapeOf reads `nft -j list table` output into the same shape.
func kernelShapeOf(js []byte) ([]string, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	rules := map[string]int{}
	var out []string
	var chains []string
	for _, obj := range doc.Nftables {
		switch {
		case obj["chain"] != nil:
			var c struct{ Name string }
			_ = json.Unmarshal(obj["chain"], &c)
			chains = append(chains, c.Name)
		case obj["rule"] != nil:
			var r struct{ Chain string }
			_ = json.Unmarshal(obj["rule"], &r)
			rules[r.Chain]++
		case obj["set"] != nil:
			var s struct{ Name string }
			_ = json.Unmarshal(obj["set"], &s)
			out = append(out, "set "+s.Name)
		case obj["map"] != nil:
			var m struct {
				Name string
				Elem []json.RawMessage
			}
			_ = json.Unmarshal(obj["map"], &m)
			out = append(out, fmt.Sprintf("map %s elements=%d", m.Name, len(m.Elem)))
		}
	}
	for _, c := range chains {
		out = append(out, fmt.Sprintf("chain %s rules=%d", c, rules[c]))
	}
	sort.Strings(out)
	return out, nil
}

// TestKernelAcceptsCompiledCorpus loads the ruleset compiled for every step
// of the conformance corpus into a throwaway namespace's kernel with nft -f,
// reads it back and checks the kernel holds the same chains, rule counts,
// sets and map entries as the IR.
func TestKernelAcceptsCompiledCorpus(t *testing.T) {
	ns := kerneltest.NewNetns(t, "tabby-test")
	for _, f := range corpusFiles(t) {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
		for _, step := range sc.Steps {
			m, errs := policy.Normalize(step.Objects)
			if len(errs) > 0 {
				t.Fatalf("%s: %v", f, errs)
			}
			tab, err := compiler.Compile(m, compiler.Options{AllLocal: true})
			if err != nil {
				t.Fatalf("%s: compile: %v", f, err)
			}
			// Replace the whole table in one transaction.
			script := "add table inet tabby\ndelete table inet tabby\n" + tab.String()
			if _, err := kerneltest.Nft(ns, []byte(script), "-f", "-"); err != nil {
				t.Fatalf("%s %s: kernel rejected the ruleset: %v\n%s", f, step.Name, err, numbered(tab.String()))
			}
			js, err := kerneltest.Nft(ns, nil, "-j", "list", "table", "inet", "tabby")
			if err != nil {
				t.Fatal(err)
			}
			got, err := kernelShapeOf(js)
			if err != nil {
				t.Fatal(err)
			}
			if want := irShape(tab); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("%s %s: kernel holds\n%s\nIR has\n%s", f, step.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
	}
}

func numbered(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = fmt.Sprintf("%4d  %s", i+1, lines[i])
	}
	return strings.Join(lines, "\n")
}
