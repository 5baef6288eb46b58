package enforcer

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/e2e/scenario"
	"github.com/tabbynet/tabby/e2e/synth"
	"github.com/tabbynet/tabby/policy"
)

// syncAndCheck syncs tab, expects exactly wantTx transactions (-1: one or
// none) and a kernel that lists the table and reads back without drift.
func syncAndCheck(t *testing.T, n netns, e *Enforcer, txs *int, tab *ir.Table, wantTx int) {
	t.Helper()
	before := *txs
	if err := e.Sync(tab); err != nil {
		t.Fatal(err)
	}
	switch got := *txs - before; {
	case wantTx >= 0 && got != wantTx:
		t.Fatalf("sync sent %d transactions, want %d", got, wantTx)
	case got > 1:
		t.Fatalf("sync sent %d transactions", got)
	}
	checkKernel(t, n, tab)
	if drift, err := e.CheckDrift(); err != nil || drift {
		t.Fatalf("CheckDrift after sync = %v, %v", drift, err)
	}
}

func TestEveryTypeMatchesKernel(t *testing.T) {
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	tab := everyTypeTable()
	syncAndCheck(t, n, e, &txs, tab, 1)
	if !e.Stats().LastFull {
		t.Error("first sync was not a full replace")
	}
	// The same table again, as the same objects and as an equal copy:
	// nothing to send, and the kernel is untouched.
	dump := n.nft(t, "", "-a", "list", "table", "inet", "tabby") // with handles
	syncAndCheck(t, n, e, &txs, tab, 0)
	syncAndCheck(t, n, e, &txs, everyTypeTable(), 0)
	if again := n.nft(t, "", "-a", "list", "table", "inet", "tabby"); again != dump {
		t.Errorf("an unchanged sync changed the kernel:\n%s", lineDiff(dump, again))
	}
}

// TestEmptyAndBack empties the table by a delta and fills it again.
func TestEmptyAndBack(t *testing.T) {
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	empty := &ir.Table{Name: "tabby"}
	syncAndCheck(t, n, e, &txs, empty, 1)
	syncAndCheck(t, n, e, &txs, everyTypeTable(), 1)
	syncAndCheck(t, n, e, &txs, empty, 1)
	syncAndCheck(t, n, e, &txs, everyTypeTable(), 1)
	if s := e.Stats(); s.FullSyncs != 1 || s.Transactions != 4 {
		t.Errorf("stats %+v", s)
	}
}

func compile(t testing.TB, m *policy.Model, o compiler.Options) *ir.Table {
	t.Helper()
	tab, err := compiler.Compile(m, o)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestCompiledTablesMatchKernel writes compiled synthetic clusters, each
// first into a fresh table, and checks the kernel lists what ir renders.
func TestCompiledTablesMatchKernel(t *testing.T) {
	n := newNetns(t)
	for seed := uint64(1); seed <= 4; seed++ {
		for _, o := range []compiler.Options{{Node: "node-1"}, {AllLocal: true}} {
			t.Run(fmt.Sprintf("seed%d-alllocal=%v", seed, o.AllLocal), func(t *testing.T) {
				var txs int
				e := newEnforcer(t, n, &txs)
				syncAndCheck(t, n, e, &txs, compile(t, synth.Generate(synth.Small(seed)), o), 1)
			})
		}
	}
}

// TestCorpusIncremental walks every step of the conformance corpus with one
// enforcer: each step's table replaces the previous step's (often of an
// unrelated scenario) by a delta, which must leave the kernel equal to it.
func TestCorpusIncremental(t *testing.T) {
	files, err := filepath.Glob("../e2e/testdata/conformance/*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	steps := 0
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "_") {
			continue
		}
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
		for _, step := range sc.Steps {
			m, errs := policy.Normalize(step.Objects)
			if len(errs) > 0 {
				t.Fatalf("%s: %v", f, errs)
			}
			tab := compile(t, m, compiler.Options{AllLocal: true})
			full := e.Stats().FullSyncs
			syncAndCheck(t, n, e, &txs, tab, -1)
			if e.Stats().FullSyncs != full && steps > 0 {
				t.Errorf("%s %s: a full replace where a delta would do", f, step.Name)
			}
			steps++
		}
	}
	t.Logf("%d steps, %d transactions", steps, txs)
}

// engine is a compiler engine loaded with a model.
func loadEngine(m *policy.Model, o compiler.Options) *compiler.Engine {
	eng := compiler.NewEngine(o)
	eng.SetTiers(m.Tiers)
	for _, p := range m.Policies {
		eng.UpsertPolicy(p)
	}
	for _, ep := range m.Endpoints {
		eng.UpsertEndpoint(ep)
	}
	for _, ns := range m.NetworkSets {
		eng.UpsertNetworkSet(ns)
	}
	eng.Flush()
	return eng
}

// TestIncrementalModelChanges drives a compiler engine through label,
// policy, pod and network set changes; after each Flush one Sync must send
// exactly one incremental transaction (none when the table did not change)
// and leave the kernel equal to the engine's table.
func TestIncrementalModelChanges(t *testing.T) {
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	m := synth.Generate(synth.Small(3))
	opts := compiler.Options{Node: "node-1"}
	eng := loadEngine(m, opts)
	syncAndCheck(t, n, e, &txs, eng.Table(), 1)

	var local, remote []policy.Endpoint
	for _, ep := range m.Endpoints {
		if ep.Node == opts.Node {
			local = append(local, ep)
		} else {
			remote = append(remote, ep)
		}
	}
	relabel := func(ep policy.Endpoint, app string) policy.Endpoint {
		ep.Labels = maps.Clone(ep.Labels)
		ep.Labels["app"] = app
		return ep
	}
	newPod := func(name, node string, ip string) policy.Endpoint {
		ep := local[0]
		ep.Ref.Name = name
		ep.Node = node
		ep.IPs = []netip.Addr{netip.MustParseAddr(ip)}
		return ep
	}
	pol := m.Policies[0]
	changed := pol
	changed.IngressRules = slices.Clone(pol.IngressRules)
	if len(changed.IngressRules) > 0 {
		changed.IngressRules[0].Destination.Ports = append(slices.Clone(changed.IngressRules[0].Destination.Ports),
			policy.PortRange{First: 7000, Last: 7010})
	}
	extra := pol
	extra.Ref.Name = "enforcer-test-extra"
	var apps []string
	for _, ep := range m.Endpoints {
		if a := ep.Labels["app"]; !slices.Contains(apps, a) {
			apps = append(apps, a)
		}
	}
	// relabelling finds a pod and an app label that changes the table, and
	// leaves that change applied.
	var moved policy.Endpoint
	relabelling := func(pods []policy.Endpoint) func() {
		return func() {
			for _, ep := range pods {
				for _, app := range apps {
					prev := eng.Table()
					eng.UpsertEndpoint(relabel(ep, app))
					eng.Flush()
					if eng.Table() != prev {
						moved = ep
						return
					}
					eng.UpsertEndpoint(ep)
					eng.Flush()
				}
			}
			t.Fatal("no label change changes the table")
		}
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"local pod label", relabelling(local)},
		{"local pod label back", func() { eng.UpsertEndpoint(moved) }},
		{"remote pod label", relabelling(remote)},
		{"remote pod label back", func() { eng.UpsertEndpoint(moved) }},
		{"network set changed", func() {
			ns := m.NetworkSets[0]
			ns.Nets = append(slices.Clone(ns.Nets), netip.MustParsePrefix("203.0.113.0/24"))
			eng.UpsertNetworkSet(ns)
		}},
		{"policy modified", func() { eng.UpsertPolicy(changed) }},
		{"policy added", func() { eng.UpsertPolicy(extra) }},
		{"policy deleted", func() { eng.DeletePolicy(pol.Ref) }},
		{"policy restored", func() { eng.UpsertPolicy(pol) }},
		{"local pod added", func() { eng.UpsertEndpoint(newPod("enf-new-local", opts.Node, "10.250.0.1")) }},
		{"remote pod added", func() { eng.UpsertEndpoint(newPod("enf-new-remote", "node-9", "10.250.0.2")) }},
		{"local pod deleted", func() { eng.DeleteEndpoint(local[1].Ref) }},
		{"remote pod deleted", func() { eng.DeleteEndpoint(remote[1].Ref) }},
		{"added pods deleted", func() {
			eng.DeleteEndpoint(policy.Ref{Kind: local[0].Ref.Kind, Namespace: local[0].Ref.Namespace, Name: "enf-new-local"})
			eng.DeleteEndpoint(policy.Ref{Kind: local[0].Ref.Kind, Namespace: local[0].Ref.Namespace, Name: "enf-new-remote"})
		}},
		{"all policies deleted", func() {
			for _, p := range m.Policies {
				eng.DeletePolicy(p.Ref)
			}
			eng.DeletePolicy(extra.Ref)
		}},
		{"all policies back", func() {
			for _, p := range m.Policies {
				eng.UpsertPolicy(p)
			}
		}},
		{"nothing", func() {}},
	}
	for _, s := range steps {
		s.do()
		eng.Flush()
		before, full := txs, e.Stats().FullSyncs
		syncAndCheck(t, n, e, &txs, eng.Table(), -1)
		if e.Stats().FullSyncs != full {
			t.Errorf("%s: full replace", s.name)
		}
		if (s.name == "nothing") != (txs == before) {
			t.Errorf("%s: sent %d transactions", s.name, txs-before)
		}
		t.Logf("%s: %d transaction(s), %d messages", s.name, txs-before, e.Stats().LastMessages)
	}
}

func TestDriftRepair(t *testing.T) {
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	tab := everyTypeTable()
	syncAndCheck(t, n, e, &txs, tab, 1)
	if wrote, err := e.Reconcile(); err != nil || wrote {
		t.Fatalf("Reconcile without drift = %v, %v", wrote, err)
	}
	for _, tamper := range []string{
		"flush ruleset",
		"delete element inet tabby np-h { 10.9.0.2 }",
		"add element inet tabby np-a { 9.9.9.9 }",
		"add rule inet tabby pol-web accept",
		"delete chain inet tabby input",
		"add element inet tabby to-endpoint { \"x\" : drop }",
		"flush chain inet tabby eg-abc",
		"insert rule inet tabby forward limit rate 10/second",
		"add chain inet tabby extra",
	} {
		n.nft(t, "", tamper)
		if drift, err := e.CheckDrift(); err != nil || !drift {
			t.Fatalf("after %q: CheckDrift = %v, %v", tamper, drift, err)
		}
		if wrote, err := e.Reconcile(); err != nil || !wrote {
			t.Fatalf("after %q: Reconcile = %v, %v", tamper, wrote, err)
		}
		checkKernel(t, n, tab)
		if drift, err := e.CheckDrift(); err != nil || drift {
			t.Fatalf("after repairing %q: CheckDrift = %v, %v", tamper, drift, err)
		}
	}
	// Another table in the namespace changes the generation but is not
	// drift; the enforcer leaves it alone.
	n.nft(t, "", "add table inet other")
	if wrote, err := e.Reconcile(); err != nil || wrote {
		t.Fatalf("Reconcile after a foreign table = %v, %v", wrote, err)
	}
	if !strings.Contains(n.nft(t, "", "list", "tables"), "table inet other") {
		t.Error("the enforcer touched another table")
	}
}

// TestFailedTransactionResyncs deletes an element behind the enforcer's
// back; removing it through Sync then makes the kernel abort the whole
// transaction (ENOENT). The error is typed, nothing of that transaction is
// applied, and the next Sync replaces the table and succeeds.
func TestFailedTransactionResyncs(t *testing.T) {
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	tab := everyTypeTable()
	syncAndCheck(t, n, e, &txs, tab, 1)
	n.nft(t, "", "delete element inet tabby np-h { 10.9.0.2 }")
	before := n.listing(t, "tabby")

	next := everyTypeTable()
	h := next.Set("np-h")
	h.Elements = slices.Delete(slices.Clone(h.Elements), 1, 2)                                               // 10.9.0.2
	next.Set("np-proto").Elements = append(next.Set("np-proto").Elements, ir.Element{Key: ir.Key{num(132)}}) // sctp
	err := e.Sync(next)
	var se *SyncError
	var ke *KernelError
	switch {
	case err == nil:
		t.Fatal("deleting an absent element succeeded")
	case !errors.As(err, &se) || se.Full:
		t.Fatalf("error %v is not an incremental *SyncError", err)
	case !errors.Is(err, ErrKernel) || !IsKernel(err) || !errors.Is(err, unix.ENOENT):
		t.Fatalf("error %v is not a kernel ENOENT", err)
	case !errors.As(err, &ke) || !strings.Contains(ke.Op, "np-h"):
		t.Fatalf("error %v does not name the set", err)
	}
	if !e.NeedsResync() {
		t.Error("no resync pending after a failed transaction")
	}
	if after := n.listing(t, "tabby"); after != before {
		t.Errorf("the failed transaction changed the kernel:\n%s", lineDiff(before, after))
	}
	full := e.Stats().FullSyncs
	syncAndCheck(t, n, e, &txs, next, 1)
	if e.Stats().FullSyncs != full+1 || e.NeedsResync() {
		t.Error("the sync after a failure was not a full replace")
	}
	// Reconcile after a failure retries the last table.
	n.nft(t, "", "delete element inet tabby np-proto { sctp }")
	if err := e.Sync(everyTypeTable()); err == nil {
		t.Fatal("deleting an absent element succeeded")
	}
	if wrote, err := e.Reconcile(); err != nil || !wrote {
		t.Fatalf("Reconcile after a failure = %v, %v", wrote, err)
	}
	checkKernel(t, n, everyTypeTable())
}

// TestAdoption starts a second enforcer on a namespace that already holds a
// table (from a previous agent run, with extra content): its first Sync
// replaces the table in one transaction that deletes and recreates it.
func TestAdoption(t *testing.T) {
	n := newNetns(t)
	var txs int
	first := newEnforcer(t, n, &txs)
	syncAndCheck(t, n, first, &txs, everyTypeTable(), 1)
	n.nft(t, "", "add chain inet tabby stale { type filter hook prerouting priority 0; }")
	n.nft(t, "", "add set inet tabby stale-set { type ipv4_addr; }")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := newEnforcer(t, n, nil)
	var ops []string
	second.onCommit = func(b *batch) { ops = append(ops, b.ops...) }
	tab := compile(t, synth.Generate(synth.Small(1)), compiler.Options{Node: "node-1"})
	if err := second.Sync(tab); err != nil {
		t.Fatal(err)
	}
	if want := []string{"add table tabby", "delete table tabby", "add table tabby"}; len(ops) < 3 || !slices.Equal(ops[:3], want) {
		t.Fatalf("adopting transaction starts with %q, want %q", ops[:min(3, len(ops))], want)
	}
	checkKernel(t, n, tab)
	if s := second.Stats(); s.Transactions != 1 || !s.LastFull {
		t.Errorf("adoption: %+v", s)
	}
}

func TestInvalidTableSendsNothing(t *testing.T) {
	n := newNetns(t)
	var txs int
	e := newEnforcer(t, n, &txs)
	tab := everyTypeTable()
	syncAndCheck(t, n, e, &txs, tab, 1)
	bad := []func(*ir.Table){
		func(t *ir.Table) { t.Sets = t.Sets[1:] }, // np-a is referenced
		func(t *ir.Table) {
			t.Chains = slices.DeleteFunc(t.Chains, func(c *ir.Chain) bool { return c.Name == "pol-web" })
		},
		func(t *ir.Table) { t.Maps[0].Entries[0].Verdict = jump("nope") },
		func(t *ir.Table) { t.Sets[2].Elements[0].Key = ir.Key{v4("::1")} },
		func(t *ir.Table) { t.Name = "other" },
		func(t *ir.Table) { t.Sets = append(t.Sets, t.Sets[0]) },
	}
	for i, mutate := range bad {
		b := everyTypeTable()
		mutate(b)
		err := e.Sync(b)
		if !errors.Is(err, ErrInvalidTable) {
			t.Errorf("case %d: got %v, want ErrInvalidTable", i, err)
		}
	}
	if txs != 1 || e.NeedsResync() {
		t.Errorf("invalid tables sent %d transactions (resync %v)", txs-1, e.NeedsResync())
	}
	checkKernel(t, n, tab)
}

// TestCounters reads back counters of rules that packets hit.
func TestCounters(t *testing.T) {
	n := newNetns(t)
	e := newEnforcer(t, n, nil)
	origin := &ir.Origin{Kind: ir.OriginConntrack, Action: policy.ActionAllow}
	tab := &ir.Table{Name: "tabby", Chains: []*ir.Chain{
		{Name: "output", Base: &ir.BaseChain{Hook: ir.HookOutput, Policy: ir.VerdictAccept}, Rules: []*ir.Rule{
			{Matches: []ir.Match{ir.MatchL4Proto{Protos: []uint8{17}}}, Counter: true, Origin: origin},
			{Matches: []ir.Match{ir.MatchNfproto{Family: ir.IPv4}, ir.MatchL4Proto{Protos: []uint8{1}}}, Counter: true},
			{Counter: true, Verdict: kind(ir.VerdictAccept)},
		}},
	}}
	if err := e.Sync(tab); err != nil {
		t.Fatal(err)
	}
	if out, err := runIn(n, "ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := runIn(n, "ping", "-c", "2", "-W", "1", "127.0.0.1"); err != nil {
		t.Skipf("ping: %v: %s", err, out)
	}
	cs, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	udp, icmp, all := cs[RuleKey{"output", 0}], cs[RuleKey{"output", 1}], cs[RuleKey{"output", 2}]
	if len(cs) != 3 || udp.Packets != 0 || icmp.Packets < 4 || all.Packets < 4 || icmp.Bytes == 0 {
		t.Errorf("counters: %+v", cs)
	}
	if udp.Comment != origin.String() || icmp.Comment != "" || udp.Handle == 0 {
		t.Errorf("comments/handles: %+v", cs)
	}
}

// TestClock checks that sync timings come from the injected clock.
func TestClock(t *testing.T) {
	n := newNetns(t)
	now := time.Unix(1000, 0)
	e, err := New(Options{NetNSPath: n.path, Clock: func() time.Time { now = now.Add(time.Second); return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Sync(everyTypeTable()); err != nil {
		t.Fatal(err)
	}
	// Three readings: start, before sending, after the kernel's answer.
	if s := e.Stats(); s.LastDuration != 2*time.Second || s.LastKernel != time.Second || !s.LastSync.Equal(time.Unix(1001, 0)) {
		t.Errorf("stats %+v", s)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(everyTypeTable()); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
}

// TestConcurrentUse runs the methods from several goroutines (run with
// -race): they are serialised.
func TestConcurrentUse(t *testing.T) {
	n := newNetns(t)
	e := newEnforcer(t, n, nil)
	a, b := everyTypeTable(), &ir.Table{Name: "tabby"}
	done := make(chan error, 4)
	go func() {
		for i := range 20 {
			tab := a
			if i%2 == 1 {
				tab = b
			}
			if err := e.Sync(tab); err != nil {
				done <- err
				return
			}
		}
		done <- e.Sync(a)
	}()
	for _, f := range []func() error{
		func() error { _, err := e.Counters(); return err },
		func() error { _, err := e.CheckDrift(); return err },
		func() error { _, err := e.Reconcile(); return err },
	} {
		go func() {
			for range 10 {
				if err := f(); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	checkKernel(t, n, a)
}
