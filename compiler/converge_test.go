package compiler

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// An event is one engine call; the same events replayed on a plain map give
// the model the engine must end up equal to.
type event struct {
	tiers  []policy.Tier
	pol    *policy.Policy
	ep     *policy.Endpoint
	ns     *policy.NetworkSet
	delete policy.Ref
	kind   string // "tiers", "pol", "ep", "ns", "del-pol", "del-ep", "del-ns"
}

func (ev event) String() string {
	switch {
	case ev.pol != nil:
		return "upsert " + ev.pol.Ref.String()
	case ev.ep != nil:
		return "upsert " + ev.ep.Ref.String()
	case ev.ns != nil:
		return "upsert " + ev.ns.Ref.String()
	case ev.kind == "tiers":
		return fmt.Sprintf("tiers %d", len(ev.tiers))
	}
	return ev.kind + " " + ev.delete.String()
}

func (ev event) apply(e *Engine) {
	switch ev.kind {
	case "tiers":
		e.SetTiers(ev.tiers)
	case "pol":
		e.UpsertPolicy(*ev.pol)
	case "ep":
		e.UpsertEndpoint(*ev.ep)
	case "ns":
		e.UpsertNetworkSet(*ev.ns)
	case "del-pol":
		e.DeletePolicy(ev.delete)
	case "del-ep":
		e.DeleteEndpoint(ev.delete)
	case "del-ns":
		e.DeleteNetworkSet(ev.delete)
	}
}

// state is the reference: the objects after replaying events.
type state struct {
	tiers []policy.Tier
	pols  map[policy.Ref]policy.Policy
	eps   map[policy.Ref]policy.Endpoint
	nss   map[policy.Ref]policy.NetworkSet
}

func newState() *state {
	return &state{pols: map[policy.Ref]policy.Policy{}, eps: map[policy.Ref]policy.Endpoint{}, nss: map[policy.Ref]policy.NetworkSet{}}
}

func (s *state) apply(ev event) {
	switch ev.kind {
	case "tiers":
		s.tiers = ev.tiers
	case "pol":
		s.pols[ev.pol.Ref] = *ev.pol
	case "ep":
		s.eps[ev.ep.Ref] = *ev.ep
	case "ns":
		s.nss[ev.ns.Ref] = *ev.ns
	case "del-pol":
		delete(s.pols, ev.delete)
	case "del-ep":
		delete(s.eps, ev.delete)
	case "del-ns":
		delete(s.nss, ev.delete)
	}
}

func (s *state) model() *policy.Model {
	m := &policy.Model{Tiers: s.tiers}
	for _, ref := range slices.SortedFunc(maps.Keys(s.pols), compareRefs) {
		m.Policies = append(m.Policies, s.pols[ref])
	}
	for _, ref := range slices.SortedFunc(maps.Keys(s.eps), compareRefs) {
		m.Endpoints = append(m.Endpoints, s.eps[ref])
	}
	for _, ref := range slices.SortedFunc(maps.Keys(s.nss), compareRefs) {
		m.NetworkSets = append(m.NetworkSets, s.nss[ref])
	}
	return m
}

// churn returns the events that build m plus changes to it: label changes
// (moving pods between apps and namespaces' selectors), address and port
// changes, moves between nodes, deletes and re-adds of every kind, policy
// edits and a tier change.
func churn(m *policy.Model, rng *rand.Rand) []event {
	var evs []event
	evs = append(evs, event{kind: "tiers", tiers: m.Tiers})
	for i := range m.Policies {
		evs = append(evs, event{kind: "pol", pol: &m.Policies[i]})
	}
	for i := range m.Endpoints {
		evs = append(evs, event{kind: "ep", ep: &m.Endpoints[i]})
	}
	for i := range m.NetworkSets {
		evs = append(evs, event{kind: "ns", ns: &m.NetworkSets[i]})
	}
	apps := appsByNamespace(m)
	for i := 0; i < len(m.Endpoints); i++ {
		ep := m.Endpoints[rng.IntN(len(m.Endpoints))]
		switch rng.IntN(7) {
		case 5: // the interface is discovered, changes, or is forgotten
			switch ep.Interface {
			case "":
				ep.Interface = "cali" + ep.Ref.Name
			case "cali" + ep.Ref.Name:
				ep.Interface = "eth-" + ep.Ref.Name
			default:
				ep.Interface = ""
			}
			evs = append(evs, event{kind: "ep", ep: &ep})
		case 0: // relabel
			ep.Labels = maps.Clone(ep.Labels)
			ep.Labels["app"] = otherApp(apps[ep.Ref.Namespace], ep.Labels["app"])
			evs = append(evs, event{kind: "ep", ep: &ep})
		case 1: // readdress, sometimes to an address another pod has
			other := m.Endpoints[rng.IntN(len(m.Endpoints))]
			ep.IPs = append([]netip.Addr{ep.IPs[0].Next()}, other.IPs...)
			evs = append(evs, event{kind: "ep", ep: &ep})
		case 2: // move node
			if ep.Node == "node-1" {
				ep.Node = "node-2"
			} else {
				ep.Node = "node-1"
			}
			evs = append(evs, event{kind: "ep", ep: &ep})
		case 3: // change ports
			ep.Ports = slices.Clone(ep.Ports)
			if len(ep.Ports) > 0 {
				ep.Ports[0].Port++
			}
			evs = append(evs, event{kind: "ep", ep: &ep})
		case 4: // delete, maybe re-add later
			evs = append(evs, event{kind: "del-ep", delete: ep.Ref})
			if rng.IntN(2) == 0 {
				evs = append(evs, event{kind: "ep", ep: &ep})
			}
		default: // a new pod
			ep.Ref.Name += "-new"
			ep.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 99, byte(i), 1})}
			evs = append(evs, event{kind: "ep", ep: &ep})
		}
	}
	for i := 0; i < len(m.Policies)/2; i++ {
		p := m.Policies[rng.IntN(len(m.Policies))]
		switch rng.IntN(4) {
		case 0:
			evs = append(evs, event{kind: "del-pol", delete: p.Ref})
		case 1: // edit rules
			if len(p.IngressRules) > 0 {
				p.IngressRules = slices.Clone(p.IngressRules)
				p.IngressRules[0].Destination.Ports = []policy.PortRange{{First: 1000, Last: 1001}}
				p.IngressRules[0].Source.NotNets = prefixes("10.0.1.8/30", "fd00::/120")
			}
			evs = append(evs, event{kind: "pol", pol: &p})
		case 2: // change governance
			p.Egress = !p.Egress
			p.Order += 3
			evs = append(evs, event{kind: "pol", pol: &p})
		default: // move to another tier
			p.Tier = m.Tiers[rng.IntN(len(m.Tiers))].Name
			evs = append(evs, event{kind: "pol", pol: &p})
		}
	}
	for _, ns := range m.NetworkSets {
		ns.Nets = append(slices.Clone(ns.Nets), prefixes("10.0.1.0/28", "203.0.113.0/24")...)
		evs = append(evs, event{kind: "ns", ns: &ns})
		if rng.IntN(2) == 0 {
			evs = append(evs, event{kind: "del-ns", delete: ns.Ref})
		}
	}
	tiers := slices.Clone(m.Tiers)
	tiers[len(tiers)-1].DefaultAction = policy.ActionDeny
	tiers[0], tiers[1] = tiers[1], tiers[0]
	evs = append(evs, event{kind: "tiers", tiers: tiers})
	return evs
}

func TestConvergence(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		m := synth.Generate(synth.Small(seed))
		rng := rand.New(rand.NewPCG(seed, 7))
		evs := churn(m, rng)
		orders := map[string][]event{
			"forward":  evs,
			"reversed": reversed(evs),
			"shuffled": shuffled(evs, rng),
		}
		for _, name := range []string{"forward", "reversed", "shuffled"} {
			t.Run(fmt.Sprintf("seed%d/%s", seed, name), func(t *testing.T) {
				opts := Options{Node: "node-1"}
				if seed%4 == 0 {
					opts = Options{AllLocal: true}
				}
				replay(t, orders[name], opts, rand.New(rand.NewPCG(seed, 11)))
			})
		}
	}
}

// replay applies evs to an engine, flushing at random points; every delta
// must carry the previous table to the new one, and the final table must be
// Compile of the final state.
func replay(t *testing.T, evs []event, opts Options, rng *rand.Rand) {
	t.Helper()
	e := NewEngine(opts)
	ref := newState()
	prev := e.Table()
	flush := func() {
		d := e.Flush()
		cur := e.Table()
		if got, want := applyDelta(t, prev, d).String(), cur.String(); got != want {
			t.Fatalf("previous table + delta != table:\n%s", lineDiff(got, want))
		}
		checkTable(t, cur)
		prev = cur
	}
	for i, ev := range evs {
		ev.apply(e)
		ref.apply(ev)
		if rng.IntN(8) == 0 || i == len(evs)-1 {
			flush()
			if t.Failed() {
				t.Fatalf("after event %d (%v)", i, ev)
			}
		}
	}
	want, err := Compile(ref.model(), opts)
	if err != nil {
		// Policies moved to a tier that exists: Compile must succeed.
		t.Fatalf("Compile: %v", err)
	}
	if len(want.Chains) < 5 || len(want.Sets) == 0 || len(want.Maps[0].Entries) == 0 {
		t.Fatalf("degenerate model: %d chains, %d sets", len(want.Chains), len(want.Sets))
	}
	if got := e.Table().String(); got != want.String() {
		t.Fatalf("engine table != Compile of the final model:\n%s", lineDiff(got, want.String()))
	}
	if d := e.Flush(); !d.Empty() {
		t.Errorf("Flush with no changes returned %+v", d)
	}
	// Upserting every object again unchanged must change nothing either.
	m := ref.model()
	e.SetTiers(m.Tiers)
	for _, p := range m.Policies {
		e.UpsertPolicy(p)
	}
	for _, ep := range m.Endpoints {
		e.UpsertEndpoint(ep)
	}
	for _, ns := range m.NetworkSets {
		e.UpsertNetworkSet(ns)
	}
	if d := e.Flush(); !d.Empty() {
		t.Errorf("re-upserting unchanged objects returned %+v", d)
	}
}

func reversed(evs []event) []event {
	out := slices.Clone(evs)
	slices.Reverse(out)
	return out
}

func shuffled(evs []event, rng *rand.Rand) []event {
	out := slices.Clone(evs)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// lineDiff shows the first differing lines of two renderings.
func lineDiff(got, want string) string {
	g, w := splitLines(got), splitLines(want)
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			lo, hi := max(0, i-3), min(max(len(g), len(w)), i+4)
			out := fmt.Sprintf("first difference at line %d\n", i+1)
			for j := lo; j < hi; j++ {
				if j < len(g) {
					out += "got:  " + g[j] + "\n"
				}
				if j < len(w) {
					out += "want: " + w[j] + "\n"
				}
			}
			return out
		}
	}
	return "(equal)"
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}
