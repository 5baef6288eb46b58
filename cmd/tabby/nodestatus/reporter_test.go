package nodestatus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

const (
	testNode    = "n1"
	testNodeUID = "3f1c1c84-0000-4000-8000-000000000001"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeSource is the agent's status as the test sets it.
type fakeSource struct {
	mu sync.Mutex
	st agent.Status
}

func (s *fakeSource) get() agent.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Errors = slices.Clone(st.Errors)
	return st
}

func (s *fakeSource) set(f func(*agent.Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.st)
}

// syncBuffer is a log sink safe for the reporter's goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func nodeObject() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Node")
	u.SetName(testNode)
	u.SetUID(testNodeUID)
	return u
}

func newFakeClient(objs ...runtime.Object) *dynfake.FakeDynamicClient {
	return dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{TabbyNodes: "TabbyNodeList", Nodes: "NodeList"}, objs...)
}

// harness runs a Reporter on a fake clock against a fake dynamic client.
type harness struct {
	t      *testing.T
	clk    *storetest.FakeClock
	client *dynfake.FakeDynamicClient
	src    *fakeSource
	rep    *Reporter
	logs   *syncBuffer

	mu     sync.Mutex
	writes []time.Time // fake time of each status update request
}

// newHarness starts a Reporter (the defaults: MinInterval 2 s, Heartbeat
// 60 s, Poll 500 ms, RetryMin 2 s, RetryMax 30 s) and waits for its first
// loop iteration. setup may add reactors before it starts.
func newHarness(t *testing.T, client *dynfake.FakeDynamicClient, setup func(*harness)) *harness {
	t.Helper()
	h := &harness{t: t, clk: storetest.NewFakeClock(t0), client: client, src: &fakeSource{}, logs: &syncBuffer{}}
	client.PrependReactor("update", "tabbynodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" {
			h.mu.Lock()
			h.writes = append(h.writes, h.clk.Now())
			h.mu.Unlock()
		}
		return false, nil, nil
	})
	if setup != nil {
		setup(h)
	}
	rep, err := New(Config{
		Client: client, Node: testNode, Source: h.src.get, Datastore: "kubernetes", AgentVersion: "v-test",
		Clock: h.clk, Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.rep = rep
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("reporter logs:\n%s", h.logs.String())
		}
	})
	h.waitSteps(1)
	return h
}

func (h *harness) waitSteps(n uint64) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.rep.steps.Load() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("the reporter's loop did not reach iteration %d (at %d)", n, h.rep.steps.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// advance moves the fake time by d and, when that passes the reporter's
// deadline, waits until its loop has handled it.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	armed := h.clk.Armed()
	fires := len(armed) > 0 && !armed[0].After(h.clk.Now().Add(d))
	steps := h.rep.steps.Load()
	h.clk.Advance(d)
	if fires {
		h.waitSteps(steps + 1)
	}
}

// advanceTo moves to t0+at in Poll-sized steps.
func (h *harness) advanceTo(at time.Duration) {
	h.t.Helper()
	for h.clk.Now().Before(t0.Add(at)) {
		h.advance(min(DefaultPoll, t0.Add(at).Sub(h.clk.Now())))
	}
}

// writeTimes are the status writes so far, as offsets from t0.
func (h *harness) writeTimes() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Duration
	for _, w := range h.writes {
		out = append(out, w.Sub(t0))
	}
	return out
}

// object is the stored TabbyNode (read from the tracker, so the read is not
// an action of the client).
func (h *harness) object() *v1alpha1.TabbyNode {
	h.t.Helper()
	obj, err := h.client.Tracker().Get(TabbyNodes, "", testNode)
	if err != nil {
		h.t.Fatalf("TabbyNode %s: %v", testNode, err)
	}
	var tn v1alpha1.TabbyNode
	if err := fromUnstructured(obj.(*unstructured.Unstructured), &tn); err != nil {
		h.t.Fatal(err)
	}
	return &tn
}

func (h *harness) verbs() []string {
	var out []string
	for _, a := range h.client.Actions() {
		s := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		out = append(out, s)
	}
	return out
}

func condition(t *testing.T, st v1alpha1.TabbyNodeStatus, typ string) metav1.Condition {
	t.Helper()
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("no condition %s in %+v", typ, st.Conditions)
	return metav1.Condition{}
}

func enforcing(st *agent.Status) {
	st.Ready, st.Alive = true, true
	st.Syncs++
	st.LastSync = t0
	st.LastSyncDuration = "1.5ms"
	st.Policies, st.Endpoints, st.LocalEndpoints, st.NetworkSets = 3, 20, 2, 1
}

func durations(ds ...float64) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		out = append(out, time.Duration(d*float64(time.Second)))
	}
	return out
}

// TestReporterRateLimit: the first write at once, changes at most once per
// MinInterval however often they come, nothing when nothing changes until
// the heartbeat.
func TestReporterRateLimit(t *testing.T) {
	h := newHarness(t, newFakeClient(nodeObject()), nil)

	if got, want := h.verbs(), []string{"get tabbynodes", "get nodes", "create tabbynodes", "update tabbynodes/status"}; !slices.Equal(got, want) {
		t.Fatalf("first write: requests %q, want %q", got, want)
	}
	tn := h.object()
	if refs := tn.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].APIVersion != "v1" ||
		refs[0].Name != testNode || refs[0].UID != testNodeUID {
		t.Fatalf("owner references %+v, want the Node with its UID", refs)
	}
	st := tn.Status
	if st.Ready || st.Datastore != "kubernetes" || st.AgentVersion != "v-test" || st.LastSync != nil {
		t.Fatalf("starting status %+v", st)
	}
	if c := condition(t, st, ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != ReasonWaitingForDatastore ||
		!c.LastTransitionTime.Time.Equal(t0) {
		t.Fatalf("Ready before the first sync: %+v", c)
	}

	// The agent syncs at t0+0.3 s: seen by the poll at 0.5 s, written at
	// 2 s (MinInterval after the first write), not before.
	h.advance(300 * time.Millisecond)
	h.src.set(enforcing)
	h.advanceTo(1999 * time.Millisecond)
	if got := h.writeTimes(); len(got) != 1 {
		t.Fatalf("writes %v before MinInterval passed, want only the first", got)
	}
	h.advanceTo(2 * time.Second)
	if got, want := h.writeTimes(), durations(0, 2); !slices.Equal(got, want) {
		t.Fatalf("writes at %v, want %v", got, want)
	}
	st = h.object().Status
	if !st.Ready || st.Policies != 3 || st.Endpoints != 20 || st.LocalEndpoints != 2 || st.NetworkSets != 1 ||
		st.Syncs != 1 || st.LastSync == nil || !st.LastSync.Time.Equal(t0) || st.LastSyncDuration != "1.5ms" || st.ErrorCount != 0 {
		t.Fatalf("status after the first sync: %+v", st)
	}
	if c := condition(t, st, ConditionReady); c.Status != metav1.ConditionTrue || c.Reason != ReasonEnforcing ||
		!c.LastTransitionTime.Time.Equal(t0.Add(2*time.Second)) || c.Message != "enforcing 3 policies for 2 local pods" {
		t.Fatalf("Ready: %+v", c)
	}
	if c := condition(t, st, ConditionSynced); c.Status != metav1.ConditionTrue || c.Reason != ReasonUpToDate {
		t.Fatalf("Synced: %+v", c)
	}

	// A sync that changes what is enforced every 500 ms for 10 s: one
	// write per 2 s.
	for range 20 {
		h.src.set(func(st *agent.Status) { st.Syncs++; st.Endpoints++ })
		h.advance(DefaultPoll)
	}
	if got, want := h.writeTimes(), durations(0, 2, 4, 6, 8, 10, 12); !slices.Equal(got, want) {
		t.Fatalf("writes at %v, want %v", got, want)
	}
	if got := h.object().Status.Syncs; got != 21 {
		t.Fatalf("syncs %d, want 21", got)
	}
	// The Ready condition did not transition again: its time stays.
	if c := condition(t, h.object().Status, ConditionReady); !c.LastTransitionTime.Time.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("Ready's lastTransitionTime moved without a transition: %+v", c)
	}

	// Syncs that change nothing but lastSync and the count (pod churn that
	// leaves the counts alone) cause no write: the next one is the
	// heartbeat, 60 s after the last write, and it carries them.
	for h.clk.Now().Before(t0.Add(71500 * time.Millisecond)) {
		h.src.set(func(st *agent.Status) { st.Syncs++ })
		h.advance(DefaultPoll)
	}
	if got := h.writeTimes(); len(got) != 7 {
		t.Fatalf("writes %v while only lastSync and syncs changed", got)
	}
	h.advanceTo(72 * time.Second)
	if got, want := h.writeTimes(), durations(0, 2, 4, 6, 8, 10, 12, 72); !slices.Equal(got, want) {
		t.Fatalf("writes at %v, want the heartbeat at 72 s", got)
	}
	st = h.object().Status
	if st.Syncs != 21+119 || st.LastHeartbeatTime == nil || !st.LastHeartbeatTime.Time.Equal(t0.Add(72*time.Second)) {
		t.Fatalf("heartbeat status: syncs %d (want %d), lastHeartbeatTime %v (want %v)",
			st.Syncs, 21+119, st.LastHeartbeatTime, t0.Add(72*time.Second))
	}

	// Notify samples at once: a change between two polls, more than
	// MinInterval after the last write, is written without waiting.
	h.advanceTo(74 * time.Second)
	h.advance(200 * time.Millisecond)
	steps := h.rep.steps.Load()
	h.src.set(func(st *agent.Status) { st.Policies = 4 })
	h.rep.Notify()
	h.waitSteps(steps + 1)
	if got, want := h.writeTimes(), durations(0, 2, 4, 6, 8, 10, 12, 72, 74.2); !slices.Equal(got, want) {
		t.Fatalf("writes at %v, want one at 74.2 s right after Notify", got)
	}
	if got := h.object().Status.Policies; got != 4 {
		t.Fatalf("policies %d after Notify, want 4", got)
	}
}

// TestReporterCaps: errors beyond the schema's 50 items and long strings are
// cut so that the status is never rejected; errorCount has the total.
func TestReporterCaps(t *testing.T) {
	client := newFakeClient(nodeObject())
	h := newHarness(t, client, nil)
	long := strings.Repeat("é", 700) // 1,400 bytes, 2-byte runes: a cut must not split one
	h.src.set(func(st *agent.Status) {
		enforcing(st)
		for i := range 120 {
			st.Errors = append(st.Errors, fmt.Sprintf("problem %d", i))
		}
		st.Errors[3] = long
		st.PendingInterfaces = []string{"shop/web: no route to 10.0.0.1", "shop/db: no route to 10.0.0.2", "shop/x: no route"}
		st.LastSyncError = strings.Repeat("x", 5000)
	})
	h.advanceTo(2 * time.Second)
	st := h.object().Status
	if st.ErrorCount != 123 || len(st.Errors) != MaxErrors {
		t.Fatalf("errorCount %d, %d errors; want 123 and %d", st.ErrorCount, len(st.Errors), MaxErrors)
	}
	for i, e := range st.Errors {
		if len(e) > 1024 || !utf8.ValidString(e) {
			t.Fatalf("errors[%d] is %d bytes (valid UTF-8: %v)", i, len(e), utf8.ValidString(e))
		}
	}
	if e := st.Errors[3]; !strings.HasSuffix(e, "…") || !strings.HasPrefix(e, "éé") || len(e) < 1020 {
		t.Fatalf("the long error was cut to %d bytes: %.40q...", len(e), e)
	}
	if st.Errors[0] != "problem 0" || st.Errors[49] != "problem 49" {
		t.Fatalf("errors are not the first 50 in order: %q .. %q", st.Errors[0], st.Errors[49])
	}
	if len(st.LastSyncError) > 4096 || !strings.HasSuffix(st.LastSyncError, "…") {
		t.Fatalf("lastSyncError %d bytes", len(st.LastSyncError))
	}
	if st.Ready {
		t.Fatal("ready with a failed last sync")
	}
	for _, typ := range []string{ConditionReady, ConditionSynced} {
		if c := condition(t, st, typ); c.Status != metav1.ConditionFalse || c.Reason != ReasonSyncFailed ||
			!strings.Contains(c.Message, "xxxx") {
			t.Fatalf("%s: %+v", typ, c)
		}
	}

	// Pending interfaces alone (errors cleared) are reported as errors too.
	h.src.set(func(st *agent.Status) { st.Errors, st.LastSyncError = nil, "" })
	h.advanceTo(4 * time.Second)
	st = h.object().Status
	if st.ErrorCount != 3 || len(st.Errors) != 3 || !strings.Contains(st.Errors[0], "shop/web: no route to 10.0.0.1") || !st.Ready {
		t.Fatalf("status with 3 pending interfaces: %+v", st)
	}
	if c := condition(t, st, ConditionReady); c.Message != "enforcing 3 policies for 2 local pods; 3 problems (status.errors)" {
		t.Fatalf("Ready message %q", c.Message)
	}
}

// TestReporterBackoff: while the API fails, attempts back off from RetryMin
// to RetryMax and changes do not add attempts; when it is back the status
// is written at the next retry, and only the first failure and the recovery
// are logged above debug.
func TestReporterBackoff(t *testing.T) {
	var mu sync.Mutex
	down := true
	var attempts []time.Duration
	h := newHarness(t, newFakeClient(nodeObject()), func(hh *harness) {
		hh.client.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			if a.GetVerb() == "get" && a.GetResource() == TabbyNodes {
				attempts = append(attempts, hh.clk.Now().Sub(t0))
			}
			if down {
				return true, nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
			}
			return false, nil, nil
		})
	})
	for i := range 200 { // 100 s, the agent changing all along
		h.src.set(func(st *agent.Status) { enforcing(st); st.Policies = i })
		h.advance(DefaultPoll)
	}
	mu.Lock()
	got := slices.Clone(attempts)
	down = false
	mu.Unlock()
	if want := durations(0, 2, 6, 14, 30, 60, 90); !slices.Equal(got, want) {
		t.Fatalf("attempts at %v, want %v (2 s doubling, at most 30 s apart)", got, want)
	}
	if _, err := h.client.Tracker().Get(TabbyNodes, "", testNode); !apierrors.IsNotFound(err) {
		t.Fatalf("a TabbyNode exists while the API was down: %v", err)
	}
	h.advanceTo(119500 * time.Millisecond)
	if got := h.writeTimes(); len(got) != 0 {
		t.Fatalf("writes at %v before the retry", got)
	}
	h.advanceTo(120 * time.Second)
	if got, want := h.writeTimes(), durations(120); !slices.Equal(got, want) {
		t.Fatalf("writes at %v, want %v", got, want)
	}
	if st := h.object().Status; st.Policies != 199 || !st.Ready {
		t.Fatalf("status after the API came back: %+v", st)
	}
	if n := h.logs.count("level=WARN msg=\"writing the TabbyNode status failed"); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1:\n%s", n, h.logs.String())
	}
	if !strings.Contains(h.logs.String(), "connection refused") || h.logs.count("level=INFO msg=\"TabbyNode status written again\" tabbynode=n1 failed_attempts=7") != 1 {
		t.Fatalf("logs lack the error or the recovery:\n%s", h.logs.String())
	}
	// Back to normal: the next change is written MinInterval later.
	h.src.set(func(st *agent.Status) { st.Policies = 7 })
	h.advanceTo(122 * time.Second)
	if got, want := h.writeTimes(), durations(120, 122); !slices.Equal(got, want) {
		t.Fatalf("writes at %v, want %v", got, want)
	}
}

// TestReporterConflictAndRecreate: a conflict refetches and writes on top; a
// deleted object is created again, with its owner, at the next write.
func TestReporterConflictAndRecreate(t *testing.T) {
	conflicts := 0
	h := newHarness(t, newFakeClient(nodeObject()), func(hh *harness) {
		hh.client.PrependReactor("update", "tabbynodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if conflicts > 0 {
				conflicts--
				return true, nil, apierrors.NewConflict(TabbyNodes.GroupResource(), testNode, errors.New("the object has been modified"))
			}
			return false, nil, nil
		})
	})
	h.src.set(enforcing)
	h.advanceTo(2 * time.Second)
	readyAt := condition(t, h.object().Status, ConditionReady).LastTransitionTime

	// One conflict: read again, write again, within the same attempt.
	h.client.ClearActions()
	conflicts = 1
	h.src.set(func(st *agent.Status) { st.Policies = 5 })
	h.advanceTo(4 * time.Second)
	if got, want := h.verbs(), []string{"update tabbynodes/status", "get tabbynodes", "update tabbynodes/status"}; !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	if got := h.object().Status.Policies; got != 5 {
		t.Fatalf("policies %d after the conflict, want 5", got)
	}
	// Conflicts in every try: the write fails and is retried with backoff.
	conflicts = maxWriteAttempts
	h.src.set(func(st *agent.Status) { st.Policies = 6 })
	h.advanceTo(6 * time.Second)
	if got := h.object().Status.Policies; got != 5 {
		t.Fatalf("policies %d, want 5 (every try conflicted)", got)
	}
	h.advanceTo(8 * time.Second) // RetryMin later
	if got := h.object().Status.Policies; got != 6 {
		t.Fatalf("policies %d after the retry, want 6", got)
	}

	// A user deletes it: the next write (here the heartbeat) creates it
	// again, owned by the Node, and its conditions start over.
	if err := h.client.Tracker().Delete(TabbyNodes, "", testNode); err != nil {
		t.Fatal(err)
	}
	h.client.ClearActions()
	h.advanceTo(68 * time.Second)
	if got, want := h.verbs(), []string{"update tabbynodes/status", "get tabbynodes", "get nodes", "create tabbynodes", "update tabbynodes/status"}; !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	tn := h.object()
	if len(tn.OwnerReferences) != 1 || tn.OwnerReferences[0].UID != testNodeUID || tn.Status.Policies != 6 || !tn.Status.Ready {
		t.Fatalf("recreated TabbyNode: owners %+v, status %+v", tn.OwnerReferences, tn.Status)
	}
	if c := condition(t, tn.Status, ConditionReady); c.LastTransitionTime.Equal(&readyAt) || !c.LastTransitionTime.Time.Equal(t0.Add(68*time.Second)) {
		t.Fatalf("recreated Ready condition %+v", c)
	}
	if n := h.logs.count("TabbyNode is gone"); n != 1 {
		t.Fatalf("%d log lines about the deletion, want 1", n)
	}
}

// TestReporterOwner: a Node that is missing or may not be read leaves the
// TabbyNode without an owner (warned once); a passing error does not.
func TestReporterOwner(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodeErr   error
		withNode  bool
		wantOwner bool
	}{
		{name: "node readable", withNode: true, wantOwner: true},
		{name: "node missing"},
		{name: "forbidden", withNode: true, nodeErr: apierrors.NewForbidden(Nodes.GroupResource(), testNode, errors.New("RBAC"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			if tc.withNode {
				objs = append(objs, nodeObject())
			}
			h := newHarness(t, newFakeClient(objs...), func(hh *harness) {
				hh.client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
					return tc.nodeErr != nil, nil, tc.nodeErr
				})
			})
			for i := range 3 { // deleted twice: created three times, warned at most once
				if i > 0 {
					if err := h.client.Tracker().Delete(TabbyNodes, "", testNode); err != nil {
						t.Fatal(err)
					}
					h.src.set(func(st *agent.Status) { st.Policies++ })
					h.advanceTo(time.Duration(2*i) * time.Second)
				}
				if got := len(h.object().OwnerReferences); got != map[bool]int{true: 1}[tc.wantOwner] {
					t.Fatalf("creation %d: %d owner references, want owner: %v", i+1, got, tc.wantOwner)
				}
			}
			if got, want := h.logs.count("cannot read the Node"), map[bool]int{false: 1}[tc.wantOwner]; got != want {
				t.Fatalf("%d warnings about the Node, want %d", got, want)
			}
			if got := h.logs.count("created TabbyNode"); got != 3 {
				t.Fatalf("%d creations logged, want 3", got)
			}
		})
	}

	t.Run("passing error", func(t *testing.T) {
		fail := true
		h := newHarness(t, newFakeClient(nodeObject()), func(hh *harness) {
			hh.client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
				if fail {
					return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
				}
				return false, nil, nil
			})
		})
		if _, err := h.client.Tracker().Get(TabbyNodes, "", testNode); !apierrors.IsNotFound(err) {
			t.Fatalf("created without the owner on a passing error (get: %v)", err)
		}
		fail = false
		h.advanceTo(2 * time.Second)
		if refs := h.object().OwnerReferences; len(refs) != 1 || refs[0].UID != testNodeUID {
			t.Fatalf("owner references %+v after the retry", refs)
		}
	})
}

// TestWriteNotServed: a create answered 404 means the CRD is not installed.
func TestWriteNotServed(t *testing.T) {
	client := newFakeClient(nodeObject())
	client.PrependReactor("create", "tabbynodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{}, "")
	})
	r, err := New(Config{Client: client, Node: testNode, Source: func() agent.Status { return agent.Status{} }})
	if err != nil {
		t.Fatal(err)
	}
	err = r.write(context.Background())
	if !IsNotServed(err) || !strings.Contains(err.Error(), "tabby.dev_tabbynodes.yaml") {
		t.Fatalf("write: %v; want IsNotServed", err)
	}
	if IsNotServed(fmt.Errorf("x: %w", apierrors.NewNotFound(TabbyNodes.GroupResource(), testNode))) {
		t.Fatal("a plain NotFound is not ErrNotServed")
	}
}

func TestConfigRequired(t *testing.T) {
	src := func() agent.Status { return agent.Status{} }
	for _, cfg := range []Config{
		{Node: testNode, Source: src},
		{Client: newFakeClient(), Source: src},
		{Client: newFakeClient(), Node: testNode},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
