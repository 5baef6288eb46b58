package nodestatus

import (
	"fmt"
	"math"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// Condition types of TabbyNodeStatus.Conditions.
const (
	// ConditionReady is status.ready with a reason: the agent has programmed
	// the kernel after its first full read of the datastore, its loop runs,
	// and its last sync succeeded.
	ConditionReady = "Ready"
	// ConditionSynced says whether the kernel holds the table compiled from
	// the latest objects the agent has seen.
	ConditionSynced = "Synced"
)

// Reasons of the conditions.
const (
	ReasonEnforcing           = "Enforcing"           // Ready: True
	ReasonUpToDate            = "UpToDate"            // Synced: True
	ReasonWaitingForDatastore = "WaitingForDatastore" // before the first sync
	ReasonSyncFailed          = "SyncFailed"          // the last kernel transaction failed
	ReasonStalled             = "Stalled"             // Ready: the loop stopped or is stuck in one batch
)

// Limits of the CRD's schema (deploy/crds/tabby.dev_tabbynodes.yaml): a
// status over them would be rejected as a whole.
const (
	MaxErrors         = 50
	maxErrorLen       = 1024
	maxSyncErrorLen   = 4096
	maxDatastoreLen   = 32
	maxVersionLen     = 128
	maxDurationLen    = 64
	maxConditionMsgLn = 32768
)

// buildStatus is the status that reports st. Conditions start from prev's,
// so a condition whose status did not change keeps its lastTransitionTime;
// now is the transition time of those that did. Times are truncated to
// seconds, the precision the API stores, so that comparing a built status
// with the last one written tells real changes only.
func buildStatus(prev []metav1.Condition, st agent.Status, datastore, version string, now metav1.Time) v1alpha1.TabbyNodeStatus {
	now = now.Rfc3339Copy()
	errs := make([]string, 0, len(st.Errors)+len(st.PendingInterfaces))
	errs = append(errs, st.Errors...)
	for _, p := range st.PendingInterfaces {
		errs = append(errs, "local pod without an interface yet (enforced as remote): "+p)
	}
	out := v1alpha1.TabbyNodeStatus{
		Datastore:        truncate(datastore, maxDatastoreLen),
		AgentVersion:     truncate(version, maxVersionLen),
		LastSyncDuration: truncate(st.LastSyncDuration, maxDurationLen),
		Syncs:            int64(min(st.Syncs, math.MaxInt64)),
		LastSyncError:    truncate(st.LastSyncError, maxSyncErrorLen),
		Policies:         clamp32(st.Policies),
		Endpoints:        clamp32(st.Endpoints),
		LocalEndpoints:   clamp32(st.LocalEndpoints),
		NetworkSets:      clamp32(st.NetworkSets),
		ErrorCount:       clamp32(len(errs)),
		// Built for a write (or to compare with the last one, which
		// ignores it): now is when it is written.
		LastHeartbeatTime: &now,
	}
	if !st.LastSync.IsZero() {
		t := metav1.NewTime(st.LastSync).Rfc3339Copy()
		out.LastSync = &t
	}
	for _, e := range errs[:min(len(errs), MaxErrors)] {
		out.Errors = append(out.Errors, truncate(e, maxErrorLen))
	}

	ready, synced := conditions(st, len(errs))
	ready.LastTransitionTime, synced.LastTransitionTime = now, now
	out.Ready = ready.Status == metav1.ConditionTrue
	if len(prev) > 0 {
		out.Conditions = make([]metav1.Condition, 0, len(prev))
		for _, c := range prev {
			// Only ours: a condition someone else added is left out rather
			// than reported as if the agent stood behind it.
			if c.Type == ConditionReady || c.Type == ConditionSynced {
				c.LastTransitionTime = c.LastTransitionTime.Rfc3339Copy()
				out.Conditions = append(out.Conditions, c)
			}
		}
	}
	meta.SetStatusCondition(&out.Conditions, ready)
	meta.SetStatusCondition(&out.Conditions, synced)
	return out
}

// conditions derives Ready and Synced from the agent's status.
func conditions(st agent.Status, problems int) (ready, synced metav1.Condition) {
	ready = metav1.Condition{Type: ConditionReady}
	synced = metav1.Condition{Type: ConditionSynced}
	switch {
	case st.LastSyncError != "":
		synced.Status, synced.Reason = metav1.ConditionFalse, ReasonSyncFailed
		synced.Message = truncate("the last kernel transaction failed, the kernel keeps the table before it: "+st.LastSyncError, maxConditionMsgLn)
	case st.Syncs == 0:
		synced.Status, synced.Reason = metav1.ConditionFalse, ReasonWaitingForDatastore
		synced.Message = "no kernel transaction yet: waiting for the datastore's initial list"
	default:
		synced.Status, synced.Reason = metav1.ConditionTrue, ReasonUpToDate
		synced.Message = "the kernel holds the table compiled from the latest objects"
	}
	switch {
	case !st.Ready:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, synced.Reason, synced.Message
	case !st.Alive:
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonStalled
		ready.Message = "the agent's loop is stopped or stuck in one batch; the kernel keeps its last table"
	case synced.Status != metav1.ConditionTrue:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, synced.Reason, synced.Message
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, ReasonEnforcing
		ready.Message = fmt.Sprintf("enforcing %d policies for %d local pods", st.Policies, st.LocalEndpoints)
		if problems > 0 {
			ready.Message += fmt.Sprintf("; %d problems (status.errors)", problems)
		}
	}
	return ready, synced
}

func clamp32(n int) int32 { return int32(max(min(n, math.MaxInt32), 0)) }

// truncate cuts s to at most n bytes on a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
