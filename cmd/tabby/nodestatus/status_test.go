package nodestatus

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
)

func TestBuildStatusConditions(t *testing.T) {
	ok := agent.Status{Ready: true, Alive: true, Syncs: 3, Policies: 2, LocalEndpoints: 1}
	for _, tc := range []struct {
		name                      string
		st                        agent.Status
		ready, synced             metav1.ConditionStatus
		readyReason, syncedReason string
	}{
		{"starting", agent.Status{Alive: true}, metav1.ConditionFalse, metav1.ConditionFalse, ReasonWaitingForDatastore, ReasonWaitingForDatastore},
		{"first sync failed", agent.Status{Alive: true, Syncs: 1, LastSyncError: "netlink: EPERM"},
			metav1.ConditionFalse, metav1.ConditionFalse, ReasonSyncFailed, ReasonSyncFailed},
		{"enforcing", ok, metav1.ConditionTrue, metav1.ConditionTrue, ReasonEnforcing, ReasonUpToDate},
		{"a later sync failed", func() agent.Status { s := ok; s.LastSyncError = "netlink: ENOBUFS"; return s }(),
			metav1.ConditionFalse, metav1.ConditionFalse, ReasonSyncFailed, ReasonSyncFailed},
		{"stalled", func() agent.Status { s := ok; s.Alive = false; return s }(),
			metav1.ConditionFalse, metav1.ConditionTrue, ReasonStalled, ReasonUpToDate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := buildStatus(nil, tc.st, "kubernetes", "v1", metav1.NewTime(t0))
			r, s := condition(t, st, ConditionReady), condition(t, st, ConditionSynced)
			if r.Status != tc.ready || r.Reason != tc.readyReason || s.Status != tc.synced || s.Reason != tc.syncedReason {
				t.Fatalf("Ready %s/%s, Synced %s/%s; want %s/%s, %s/%s", r.Status, r.Reason, s.Status, s.Reason,
					tc.ready, tc.readyReason, tc.synced, tc.syncedReason)
			}
			if st.Ready != (r.Status == metav1.ConditionTrue) {
				t.Fatalf("status.ready %v with Ready %s", st.Ready, r.Status)
			}
			if r.Message == "" || s.Message == "" {
				t.Fatalf("a condition without a message: %+v %+v", r, s)
			}
		})
	}
}

// TestBuildStatusTransitions: lastTransitionTime moves only when a
// condition's status does; conditions of other writers are not kept; times
// are whole seconds, as the API stores them.
func TestBuildStatusTransitions(t *testing.T) {
	ok := agent.Status{Ready: true, Alive: true, Syncs: 1}
	first := buildStatus([]metav1.Condition{{Type: "SomeoneElses", Status: metav1.ConditionTrue, Reason: "X"}},
		ok, "", "", metav1.NewTime(t0.Add(1500*time.Millisecond)))
	if len(first.Conditions) != 2 {
		t.Fatalf("conditions %+v: want only Ready and Synced", first.Conditions)
	}
	if at := condition(t, first, ConditionReady).LastTransitionTime.Time; !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("transition time %v, want whole seconds", at)
	}
	ok.Syncs, ok.Policies = 2, 5 // no status change
	same := buildStatus(first.Conditions, ok, "", "", metav1.NewTime(t0.Add(time.Minute)))
	if at := condition(t, same, ConditionReady).LastTransitionTime.Time; !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("Ready moved to %v without a transition", at)
	}
	if m := condition(t, same, ConditionReady).Message; m != "enforcing 5 policies for 0 local pods" {
		t.Fatalf("message %q not updated", m)
	}
	ok.LastSyncError = "boom"
	failed := buildStatus(same.Conditions, ok, "", "", metav1.NewTime(t0.Add(2*time.Minute)))
	for _, typ := range []string{ConditionReady, ConditionSynced} {
		if at := condition(t, failed, typ).LastTransitionTime.Time; !at.Equal(t0.Add(2 * time.Minute)) {
			t.Fatalf("%s transition at %v, want the failure's time", typ, at)
		}
	}
}
