package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

func TestDebouncer(t *testing.T) {
	t0 := time.Unix(100, 0)
	ms := time.Millisecond
	d := debouncer{window: 5 * ms, max: 20 * ms}
	steps := []struct {
		at, want time.Duration
	}{
		{0, 5 * ms},        // first change: window
		{3 * ms, 8 * ms},   // each change restarts the window
		{7 * ms, 12 * ms},  //
		{16 * ms, 20 * ms}, // capped at first + max
		{19 * ms, 20 * ms}, //
	}
	for _, s := range steps {
		if got := d.kick(t0.Add(s.at)); !got.Equal(t0.Add(s.want)) {
			t.Fatalf("kick at %v: due %v, want %v", s.at, got.Sub(t0), s.want)
		}
	}
	d.fire()
	if got := d.kick(t0.Add(30 * ms)); !got.Equal(t0.Add(35 * ms)) {
		t.Fatalf("after fire, a change opens a new batch: due %v, want 35ms", got.Sub(t0))
	}
}

const basePods = `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c, image: x}]}
status: {podIP: 10.0.0.2}
`

func netpol(name, app string, port int) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: %s, namespace: shop}
spec:
  podSelector: {matchLabels: {app: %s}}
  ingress: [{ports: [{port: %d}]}]
`, name, app, port)
}

// loopAgent runs an agent with its loop on a fake clock and a fake datastore.
type loopAgent struct {
	a      *Agent
	app    *fakeApplier
	clock  *storetest.FakeClock
	h      store.Handler
	cancel context.CancelFunc
	done   chan error
}

func startLoop(t *testing.T, app Applier, fa *fakeApplier, mod func(*Config)) *loopAgent {
	t.Helper()
	fs := newFakeStore()
	clock := storetest.NewFakeClock(time.Unix(1000, 0))
	cfg := Config{Node: testNode, Datastore: fs, Applier: app, Clock: clock, Logger: quietLogger(),
		Interfaces: &fakeFinder{all: true}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &loopAgent{a: a, app: fa, clock: clock, cancel: cancel, done: make(chan error, 1)}
	go func() { l.done <- a.Run(ctx) }()
	l.h = <-fs.h
	t.Cleanup(func() {
		cancel()
		<-l.done
	})
	return l
}

// advance waits until the loop armed its debounce timer for d from now, then
// moves the clock there.
func (l *loopAgent) advance(t *testing.T, d time.Duration) {
	t.Helper()
	l.settle(t)
	l.waitArmed(t, l.clock.Now().Add(d))
	l.clock.Advance(d)
}

// settle waits until the loop has handled every event recorded so far, so
// that its debounce timer reflects the latest one.
func (l *loopAgent) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.a.seen.Load() != l.a.rec.gen.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the loop did not take the recorded events")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func (l *loopAgent) waitArmed(t *testing.T, at time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.clock.WaitArmed(ctx, at); err != nil {
		t.Fatal(err)
	}
}

func upsertAll(h store.Handler, objs []policy.Object) {
	for _, o := range objs {
		h.Upsert(o)
	}
}

func TestBurstWithinDebounceIsOneSync(t *testing.T) {
	app := newFakeApplier()
	l := startLoop(t, app, app, nil)
	initial := decode(t, "pods.yaml", basePods)
	upsertAll(l.h, initial)

	// Nothing happens before the datastore's initial list is complete, and
	// the agent is not ready.
	l.advance(t, DefaultDebounce)
	time.Sleep(20 * time.Millisecond)
	if app.syncs() != 0 || l.a.Ready() {
		t.Fatalf("synced (%d) or ready (%v) before the datastore synced", app.syncs(), l.a.Ready())
	}
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 1)
	if !l.a.Ready() {
		t.Fatal("not ready after the first sync")
	}

	// A burst of changes within the window: one batch, one Sync.
	all := slices.Clone(initial)
	for i := range 20 {
		o := decode(t, "burst.yaml", netpol(fmt.Sprintf("p%d", i), "web", 8000+i))
		l.h.Upsert(o[0])
		all = append(all, o[0])
	}
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 2)
	time.Sleep(20 * time.Millisecond)
	l.clock.Advance(time.Second) // a stray batch would run now
	time.Sleep(20 * time.Millisecond)
	if n := app.syncs(); n != 2 {
		t.Fatalf("%d syncs, want 2 (initial + one for the burst)", n)
	}
	if got, want := app.last().String(), expectedTable(t, all, &fakeFinder{all: true}); got != want {
		t.Fatalf("synced table differs from a full compile:\n%s\n--- want\n%s", got, want)
	}
}

func TestMaxDelayBoundsAStream(t *testing.T) {
	app := newFakeApplier()
	l := startLoop(t, app, app, func(c *Config) { c.Debounce, c.MaxDelay = 5*time.Millisecond, 20*time.Millisecond })
	upsertAll(l.h, decode(t, "pods.yaml", basePods))
	l.h.Synced()
	l.advance(t, 5*time.Millisecond)
	app.waitSyncs(t, 1)
	// A change every 4ms keeps restarting the 5ms window; the batch must
	// still run 20ms after the first change.
	ms := time.Millisecond
	start := l.clock.Now()
	for i := range 5 {
		l.h.Upsert(decode(t, "s.yaml", netpol(fmt.Sprintf("s%d", i), "web", 9000+i))[0])
		due := l.clock.Now().Add(5 * ms)
		if limit := start.Add(20 * ms); due.After(limit) {
			due = limit
		}
		l.settle(t)
		l.waitArmed(t, due)
		if app.syncs() != 1 {
			t.Fatalf("batch ran early, at %v", l.clock.Now().Sub(start))
		}
		l.clock.Advance(4 * ms)
	}
	app.waitSyncs(t, 2)
	if got := l.clock.Now().Sub(start); got != 20*time.Millisecond {
		t.Fatalf("batch ran %v after the first change, want 20ms", got)
	}
}

// tableHas reports whether the last synced table has a chain of that name.
func tableHas(app *fakeApplier, chain string) bool {
	t := app.last()
	return t != nil && slices.ContainsFunc(t.Chains, func(c *ir.Chain) bool { return c.Name == chain })
}

func knpChain(name string) string {
	return compiler.PolicyChainName(policy.Ref{Kind: policy.KindK8sNetworkPolicy, Namespace: "shop", Name: name}, policy.Ingress)
}

func TestInvalidObjectKeepsLastValidVersion(t *testing.T) {
	app := newFakeApplier()
	f := &fakeFinder{all: true}
	a := syncAgent(t, app, f)
	a.rec.Synced()
	pods := decode(t, "pods.yaml", basePods)
	allowV1 := decode(t, "allow.yaml", netpol("allow", "web", 80))[0]
	upsertAll(a.rec, pods)
	a.rec.Upsert(allowV1)
	a.batch()
	if !tableHas(app, knpChain("allow")) {
		t.Fatal("policy allow not enforced")
	}

	// A new version that does not normalise, and in the same batch a valid
	// new policy: allow keeps its first version, other is enforced.
	allowBad := decode(t, "allow.yaml", strings.Replace(netpol("allow", "web", 81), "port: 81", "port: 81, protocol: ICMP", 1))[0]
	other := decode(t, "other.yaml", netpol("other", "web", 9090))[0]
	a.rec.Upsert(allowBad)
	a.rec.Upsert(other)
	a.batch()
	want := expectedTable(t, append(slices.Clone(pods), allowV1, other), f)
	if got := app.last().String(); got != want {
		t.Fatalf("after an invalid update, table is not allow v1 + other:\n%s\n--- want\n%s", got, want)
	}
	errs := a.Status().Errors
	if !contains(errs, "allow.yaml (document 1)") || !contains(errs, "spec.ingress[0].ports[0].protocol") ||
		!contains(errs, "enforcing the last valid version") {
		t.Fatalf("status errors %q: want the file, the field and that the last valid version is enforced", errs)
	}

	// An object invalid from its first version is left out, the rest stays.
	bad := decode(t, "bad.yaml", strings.Replace(netpol("bad", "web", 1), "port: 1", "port: 1, protocol: ICMP", 1))[0]
	a.rec.Upsert(bad)
	a.batch()
	if tableHas(app, knpChain("bad")) || !tableHas(app, knpChain("other")) {
		t.Fatal("an invalid new object must be left out and the others kept")
	}
	if errs := a.Status().Errors; !contains(errs, "bad.yaml (document 1)") || !contains(errs, "(left out)") {
		t.Fatalf("status errors %q: want bad.yaml left out", errs)
	}

	// Fixed: the new version replaces the old one and the error goes.
	allowV3 := decode(t, "allow.yaml", netpol("allow", "web", 82))[0]
	a.rec.Upsert(allowV3)
	a.rec.Delete(bad.Ref)
	a.batch()
	want = expectedTable(t, append(slices.Clone(pods), allowV3, other), f)
	if got := app.last().String(); got != want {
		t.Fatalf("after the fix, table differs:\n%s\n--- want\n%s", got, want)
	}
	if errs := a.Status().Errors; len(errs) != 0 {
		t.Fatalf("errors remain after the fix: %q", errs)
	}
	// Deleting an object drops every version of it.
	a.rec.Delete(allowV3.Ref)
	a.batch()
	if tableHas(app, knpChain("allow")) {
		t.Fatal("deleted policy still enforced")
	}
}

func TestInvalidContextObjectKeepsLastValidVersion(t *testing.T) {
	app := newFakeApplier()
	f := &fakeFinder{all: true}
	a := syncAgent(t, app, f)
	a.rec.Synced()
	objs := decode(t, "c.yaml", `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: tabby.dev/v1alpha1
kind: Tier
metadata: {name: sec}
spec: {order: 10}
---
apiVersion: tabby.dev/v1alpha1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec: {tier: sec, selector: app == "web", ingress: [{action: Allow}]}
`)
	objs = append(objs, decode(t, "pods.yaml", basePods)...)
	upsertAll(a.rec, objs)
	a.batch()
	want := app.last().String()
	// A Namespace with an invalid label and a Tier with an invalid order
	// (both decode; neither normalises): the previous versions stay.
	broken := decode(t, "c.yaml", `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {"team": "-bad-"}}
---
apiVersion: tabby.dev/v1alpha1
kind: Tier
metadata: {name: sec}
spec: {order: 10, defaultAction: Allow}
`)
	upsertAll(a.rec, broken)
	a.batch()
	if got := app.last().String(); got != want {
		t.Fatalf("invalid Namespace/Tier versions changed the table:\n%s\n--- want\n%s", got, want)
	}
	if errs := a.Status().Errors; len(errs) < 2 || !contains(errs, "metadata.labels") || !contains(errs, "defaultAction") {
		t.Fatalf("status errors %q: want the Namespace label and the Tier defaultAction", errs)
	}
	// Deleting the tier drops the policy that needs it.
	a.rec.Delete(policy.Ref{Kind: policy.KindTier, Name: "sec"})
	a.batch()
	tnp := compiler.PolicyChainName(policy.Ref{Kind: policy.KindTabbyNetworkPolicy, Namespace: "shop", Name: "p"}, policy.Ingress)
	if tableHas(app, tnp) {
		t.Fatal("policy of a deleted tier still enforced")
	}
	// And recreating it brings the policy back.
	a.rec.Upsert(objs[1])
	a.batch()
	if !tableHas(app, tnp) {
		t.Fatal("policy not back with its tier")
	}
}

func TestInterfaceDiscovery(t *testing.T) {
	app := newFakeApplier()
	f := &fakeFinder{}
	a := syncAgent(t, app, f)
	a.rec.Synced()
	objs := append(decode(t, "pods.yaml", basePods), decode(t, "p.yaml", netpol("allow", "web", 80))...)
	upsertAll(a.rec, objs)
	a.batch()
	entries := func() []string {
		var out []string
		for _, m := range app.last().Maps {
			for _, e := range m.Entries {
				out = append(out, e.Key[0].Str)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	if e := entries(); len(e) != 0 {
		t.Fatalf("map entries %v before any interface is known", e)
	}
	if st := a.Status(); !contains(st.PendingInterfaces, "shop/web") {
		t.Fatalf("pending interfaces %q: want shop/web", st.PendingInterfaces)
	}
	// The pod's address is in the sets meanwhile: it is published as remote.
	if m := a.pub.published[objs[0].Ref]; m.Node != "" || len(m.IPs) != 1 {
		t.Fatalf("pending pod published as %+v, want remote with its address", m)
	}

	web := netip.MustParseAddr("10.0.0.1")
	f.set(web, "cali1")
	a.batch() // pending pods are looked up in every batch
	if e := entries(); !slices.Equal(e, []string{"cali1"}) {
		t.Fatalf("map entries %v, want [cali1]", e)
	}
	// The interface changes (pod sandbox recreated): a route/link event
	// re-resolves every local pod.
	f.set(web, "cali2")
	a.rec.interfacesChanged()
	a.batch()
	if e := entries(); !slices.Equal(e, []string{"cali2"}) {
		t.Fatalf("map entries %v, want [cali2]", e)
	}

	// A second local pod routed to the same interface waits.
	web2 := decode(t, "pods.yaml", strings.NewReplacer("name: web", "name: web2", "10.0.0.1", "10.0.0.3").Replace(basePods))[0]
	f.set(netip.MustParseAddr("10.0.0.3"), "cali2")
	a.rec.Upsert(web2)
	a.batch()
	var conflict *InterfaceConflictError
	if err := a.pub.pending[web2.Ref]; err == nil || !errorsAs(err, &conflict) || conflict.Holder != "shop/web" {
		t.Fatalf("web2 pending error %v, want an InterfaceConflictError naming shop/web", err)
	}
	// When the holder goes, the waiting pod takes the interface at once.
	a.rec.Delete(objs[0].Ref)
	a.batch()
	if p := a.pub.published[web2.Ref]; p.Interface != "cali2" || p.Node != testNode {
		t.Fatalf("web2 published as %+v, want local on cali2", p)
	}
	if len(a.pub.pending) != 0 {
		t.Fatalf("still pending: %v", a.pub.pending)
	}
}

func TestPendingInterfaceRecheckedOnTimer(t *testing.T) {
	app := newFakeApplier()
	f := &fakeFinder{}
	l := startLoop(t, app, app, func(c *Config) { c.Interfaces = f })
	upsertAll(l.h, append(decode(t, "pods.yaml", basePods), decode(t, "p.yaml", netpol("allow", "web", 80))...))
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 1)
	f.set(netip.MustParseAddr("10.0.0.1"), "veth-web")
	l.waitArmed(t, time.Unix(1000, 0).Add(DefaultInterfaceRecheck))
	l.clock.Advance(time.Unix(1000, 0).Add(DefaultInterfaceRecheck).Sub(l.clock.Now()))
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 2)
	if !strings.Contains(app.last().String(), `"veth-web"`) {
		t.Fatalf("the recheck did not publish the interface:\n%s", app.last())
	}
}

func TestFailedSyncIsRetried(t *testing.T) {
	app := newFakeApplier()
	app.fail = 2
	l := startLoop(t, app, app, nil)
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	waitCalls(t, app, 1)
	if l.a.Ready() {
		t.Fatal("ready though the sync failed")
	}
	if st := l.a.Status(); !strings.Contains(st.LastSyncError, "injected") || !contains(st.Errors, "sync: injected") {
		t.Fatalf("status %+v: want the sync error", st)
	}
	l.advance(t, DefaultRetryMin)
	waitCalls(t, app, 2)
	l.advance(t, 2*DefaultRetryMin) // backoff doubles
	app.waitSyncs(t, 1)
	if !l.a.Ready() {
		t.Fatal("not ready after a successful retry")
	}
	if st := l.a.Status(); st.LastSyncError != "" || st.Syncs != 3 {
		t.Fatalf("status %+v: want 3 syncs, no error", st)
	}
}

func waitCalls(t *testing.T, app *fakeApplier, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(app.Calls()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d applier calls, have %v", n, app.Calls())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReconcileRunsPeriodically(t *testing.T) {
	app := newFakeApplier()
	rec := &reconcilingApplier{fakeApplier: app, repaired: true}
	l := startLoop(t, rec, app, nil)
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 1)
	l.waitArmed(t, time.Unix(1000, 0).Add(DefaultReconcileInterval))
	l.clock.Advance(time.Unix(1000, 0).Add(DefaultReconcileInterval).Sub(l.clock.Now()))
	waitCalls(t, app, 2)
	if c := app.Calls(); c[1] != "Reconcile" {
		t.Fatalf("calls %v, want Sync then Reconcile", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.a.Status().Repairs != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: want one repair", l.a.Status())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdownLeavesKernelState(t *testing.T) {
	app := newFakeApplier()
	l := startLoop(t, app, app, nil)
	upsertAll(l.h, decode(t, "pods.yaml", basePods))
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 1)
	// A change is pending when the signal comes: it is not applied either.
	l.h.Upsert(decode(t, "p.yaml", netpol("late", "web", 80))[0])
	l.cancel()
	select {
	case err := <-l.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	l.done <- nil // for the cleanup
	if c := app.Calls(); !slices.Equal(c, []string{"Sync"}) {
		t.Fatalf("applier calls %v: want the one Sync, nothing on shutdown", c)
	}
	if l.a.Alive() {
		t.Fatal("alive after Run returned")
	}
}

func TestHealthEndpoints(t *testing.T) {
	app := newFakeApplier()
	l := startLoop(t, app, app, nil)
	srv := httptest.NewServer(l.a.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(t, resp))
		return resp.StatusCode, b.String()
	}
	waitAlive(t, l.a)
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d while the loop runs", code)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d before the first sync", code)
	}
	upsertAll(l.h, append(decode(t, "pods.yaml", basePods), decode(t, "p.yaml", netpol("allow", "web", 80))...))
	l.h.Problems("/m/bad.yaml", []error{&policy.FieldError{Source: policy.Source{File: "/m/bad.yaml", Doc: 2}, Field: "spec.x", Reason: "unknown field"}})
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 1)
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d after the first sync", code)
	}
	code, body := get("/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("/status %d %q: %v", code, body, err)
	}
	if !st.Ready || st.Node != testNode || st.Policies != 1 || st.Endpoints != 2 || st.LocalEndpoints != 1 ||
		st.Syncs != 1 || st.LastSync.IsZero() || !contains(st.Errors, "/m/bad.yaml (document 2): spec.x") {
		t.Fatalf("/status %s", body)
	}
	// A batch stuck for longer than the stall timeout fails liveness.
	l.a.busy.Store(l.clock.Now().Add(-DefaultStallTimeout - time.Second).UnixNano())
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz %d with a stalled batch", code)
	}
	l.a.busy.Store(0)
}

func waitAlive(t *testing.T, a *Agent) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !a.Alive() {
		if time.Now().After(deadline) {
			t.Fatal("loop never started")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPodMovingAwayReleasesItsInterface(t *testing.T) {
	app := newFakeApplier()
	f := &fakeFinder{}
	a := syncAgent(t, app, f)
	a.rec.Synced()
	pods := decode(t, "pods.yaml", basePods)
	f.set(netip.MustParseAddr("10.0.0.1"), "cali1")
	f.set(netip.MustParseAddr("10.0.0.3"), "cali1")
	web2 := decode(t, "pods.yaml", strings.NewReplacer("name: web", "name: web2", "10.0.0.1", "10.0.0.3").Replace(basePods))[0]
	upsertAll(a.rec, append(pods, web2))
	a.batch()
	if a.pub.published[pods[0].Ref].Interface != "cali1" || a.pub.pending[web2.Ref] == nil {
		t.Fatalf("web should hold cali1 and web2 wait: published %+v, pending %v", a.pub.published, a.pub.pending)
	}
	// web is rescheduled to another node: web2 takes the interface.
	moved := decode(t, "pods.yaml", strings.Replace(basePods, "nodeName: n1", "nodeName: n9", 1))[0]
	a.rec.Upsert(moved)
	a.batch()
	if p := a.pub.published[web2.Ref]; p.Interface != "cali1" || p.Node != testNode {
		t.Fatalf("web2 published as %+v, want local on cali1", p)
	}
}

// TestLastChangeSeen checks /status's lastChangeSeen: the time the datastore
// reported noticing the change (store.Observer), else the Upsert's own time,
// carried over to the retry when the Sync that should apply it fails.
func TestLastChangeSeen(t *testing.T) {
	app := newFakeApplier()
	l := startLoop(t, app, app, nil)
	upsertAll(l.h, decode(t, "pods.yaml", basePods))
	l.h.Synced()
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 1)

	// The datastore saw the change 3 ms before delivering it.
	obs, ok := l.h.(store.Observer)
	if !ok {
		t.Fatal("the agent's handler does not implement store.Observer")
	}
	seen := l.clock.Now()
	obs.Observed(seen)
	l.clock.Advance(3 * time.Millisecond)
	l.h.Upsert(decode(t, "a.yaml", netpol("p1", "web", 80))[0])
	l.advance(t, DefaultDebounce)
	app.waitSyncs(t, 2)
	st := l.a.Status()
	if !st.LastChangeSeen.Equal(seen) {
		t.Fatalf("lastChangeSeen %v, want the observed %v", st.LastChangeSeen, seen)
	}
	if got := st.LastSync.Sub(st.LastChangeSeen); got != 3*time.Millisecond+DefaultDebounce {
		t.Fatalf("lastSync - lastChangeSeen = %v, want 3ms + debounce", got)
	}

	// Without an Observed call since, the Upsert stamps itself; a failed
	// Sync hands that time to its retry.
	app.mu.Lock()
	app.fail = 1
	app.mu.Unlock()
	l.clock.Advance(time.Second)
	upserted := l.clock.Now()
	obs.Observed(upserted) // what the directory datastore does before each event
	l.h.Upsert(decode(t, "a.yaml", netpol("p2", "web", 81))[0])
	l.advance(t, DefaultDebounce)
	waitCalls(t, app, 3)
	l.advance(t, DefaultRetryMin)
	app.waitSyncs(t, 3)
	if st := l.a.Status(); !st.LastChangeSeen.Equal(upserted) {
		t.Fatalf("after the retry lastChangeSeen %v, want %v (the failed batch's change)", st.LastChangeSeen, upserted)
	}
}
