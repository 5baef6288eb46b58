package compiler

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// TestDeterminism compiles models twice and with every input slice shuffled
// (including the IPs and ports of endpoints and the nets of rules); the
// rendered tables must be byte-identical.
func TestDeterminism(t *testing.T) {
	models := goldenModels()
	for seed := uint64(1); seed <= 4; seed++ {
		models["synth"+string(rune('0'+seed))] = synth.Generate(synth.Small(seed))
	}
	cfg := synth.Default()
	cfg.Pods, cfg.Namespaces, cfg.Policies, cfg.PodsPerNode = 1500, 60, 300, 50
	models["synth-medium"] = synth.Generate(cfg)
	for name, m := range models {
		t.Run(name, func(t *testing.T) {
			for _, opts := range []Options{{Node: "node-1"}, {AllLocal: true}} {
				a, err := Compile(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				b, err := Compile(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				if a.String() != b.String() {
					t.Fatalf("two compiles differ:\n%s", lineDiff(a.String(), b.String()))
				}
				rng := rand.New(rand.NewPCG(3, 4))
				for range 3 {
					c, err := Compile(shuffleModel(m, rng), opts)
					if err != nil {
						t.Fatal(err)
					}
					if a.String() != c.String() {
						t.Fatalf("shuffled input compiles differently:\n%s", lineDiff(c.String(), a.String()))
					}
				}
			}
		})
	}
}

func shuffleSlice[T any](rng *rand.Rand, s []T) []T {
	s = slices.Clone(s)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

// shuffleModel reorders everything whose order carries no meaning. Tiers
// keep their order (it is the evaluation order), and so do rules.
func shuffleModel(m *policy.Model, rng *rand.Rand) *policy.Model {
	out := &policy.Model{Tiers: m.Tiers}
	for _, p := range shuffleSlice(rng, m.Policies) {
		p.IngressRules = shuffleRuleSets(rng, p.IngressRules)
		p.EgressRules = shuffleRuleSets(rng, p.EgressRules)
		out.Policies = append(out.Policies, p)
	}
	for _, ep := range shuffleSlice(rng, m.Endpoints) {
		ep.IPs = shuffleSlice(rng, ep.IPs)
		ep.Ports = shuffleSlice(rng, ep.Ports)
		out.Endpoints = append(out.Endpoints, ep)
	}
	for _, ns := range shuffleSlice(rng, m.NetworkSets) {
		ns.Nets = shuffleSlice(rng, ns.Nets)
		out.NetworkSets = append(out.NetworkSets, ns)
	}
	return out
}

func shuffleRuleSets(rng *rand.Rand, rules []policy.Rule) []policy.Rule {
	rules = slices.Clone(rules)
	for i := range rules {
		for _, p := range []*policy.Peer{&rules[i].Source, &rules[i].Destination} {
			p.Nets = shuffleSlice(rng, p.Nets)
			p.NotNets = shuffleSlice(rng, p.NotNets)
			p.Ports = shuffleSlice(rng, p.Ports)
			p.NamedPorts = shuffleSlice(rng, p.NamedPorts)
		}
	}
	return rules
}

func TestCompileErrors(t *testing.T) {
	good := goldenModels()["default-deny"]
	for _, tc := range []struct {
		name   string
		mutate func(m *policy.Model)
		want   error
	}{
		{"unknown tier", func(m *policy.Model) { m.Policies[0].Tier = "nope" }, ErrUnknownTier},
		{"no subject", func(m *policy.Model) { m.Policies[0].Subject = nil }, ErrNoSubject},
		{"bad action", func(m *policy.Model) {
			m.Policies[0].IngressRules = []policy.Rule{{Action: 0}}
		}, ErrInvalidAction},
		{"duplicate endpoint", func(m *policy.Model) { m.Endpoints = append(m.Endpoints, m.Endpoints[0]) }, ErrDuplicate},
		{"bad tier default", func(m *policy.Model) { m.Tiers[1].DefaultAction = policy.ActionAllow }, ErrInvalidDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &policy.Model{
				Tiers:     slices.Clone(good.Tiers),
				Policies:  slices.Clone(good.Policies),
				Endpoints: slices.Clone(good.Endpoints),
			}
			tc.mutate(m)
			_, err := Compile(m, Options{Node: "node-1"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Compile error = %v, want %v", err, tc.want)
			}
			var oe *ObjectError
			if !errors.As(err, &oe) || oe.Object.Name == "" {
				t.Errorf("error %v does not name the object", err)
			}
		})
	}
}

// TestFailClosed: a policy the engine cannot use must not open anything up
// that was closed: with a bad default the tier denies.
func TestFailClosed(t *testing.T) {
	m := goldenModels()["default-deny"]
	tiers := slices.Clone(m.Tiers)
	tiers[1].DefaultAction = policy.ActionAllow
	e := NewEngine(Options{Node: "node-1"})
	e.SetTiers(tiers)
	e.UpsertPolicy(m.Policies[0])
	for _, ep := range m.Endpoints {
		e.UpsertEndpoint(ep)
	}
	e.Flush()
	want, err := Compile(m, Options{Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Table().String(); got != want.String() {
		t.Errorf("invalid default does not deny:\n%s", lineDiff(got, want.String()))
	}
	if len(e.Problems()) != 1 {
		t.Errorf("problems = %v, want one", e.Problems())
	}
}

// TestTableImmutable: a table returned earlier is not changed by later
// flushes.
func TestTableImmutable(t *testing.T) {
	m := goldenModels()["allow-from-namespace"]
	e := NewEngine(Options{Node: "node-1"})
	e.SetTiers(m.Tiers)
	for _, p := range m.Policies {
		e.UpsertPolicy(p)
	}
	for _, ep := range m.Endpoints {
		e.UpsertEndpoint(ep)
	}
	e.Flush()
	before := e.Table()
	snapshot := before.String()
	e.DeleteEndpoint(m.Endpoints[2].Ref)
	ep := m.Endpoints[0]
	ep.Labels = maps2(ep.Labels, "extra", "1")
	e.UpsertEndpoint(ep)
	p := m.Policies[0]
	p.IngressRules = slices.Clone(p.IngressRules)
	p.IngressRules[0].Destination = tcp(22)
	e.UpsertPolicy(p)
	if d := e.Flush(); d.Empty() {
		t.Fatal("changes produced an empty delta")
	}
	if before.String() != snapshot {
		t.Error("an earlier table changed after Flush")
	}
	if e.Table().String() == snapshot {
		t.Error("the table did not change")
	}
}

func maps2(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}
