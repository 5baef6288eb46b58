// Package nodestatus reports what a node's agent enforces as the TabbyNode
// named after the node (tabby.dev/v1alpha1, cluster-scoped, see
// policy/api/v1alpha1.TabbyNode), where `kubectl get tabbynodes` shows it.
//
// In: a func() agent.Status (the agent's /status document; cmd/tabby passes
// (*agent.Agent).Status) and a dynamic client for the API server.
//
// Out: the TabbyNode. The Reporter creates it when it is absent, with an
// owner reference to the Node (so it is garbage-collected with the Node)
// when the Node can be read, and without one otherwise (logged once); after
// that it writes only the status subresource. The status carries the counts
// of the agent's status, the last sync and its error, Errors (at most
// MaxErrors, each cut to the schema's length; ErrorCount has them all),
// Datastore, AgentVersion and two conditions:
//
//	Ready   True  Enforcing            first sync after the datastore's initial list done, loop alive, last sync ok
//	        False WaitingForDatastore  no kernel transaction yet
//	        False SyncFailed           the last kernel transaction failed (the kernel keeps its previous table)
//	        False Stalled              the agent's loop stopped or is stuck in one batch
//	Synced  True  UpToDate             the kernel holds the table compiled from the latest objects
//	        False WaitingForDatastore | SyncFailed
//
// status.ready equals the Ready condition.
//
// # Timing
//
// The Reporter samples the source every Poll (500 ms; Notify samples at
// once) on its own goroutine: it never blocks or slows the agent, whose
// Status() only copies a snapshot under a mutex. A change is written at most
// once per MinInterval (2 s) after the previous attempt; an unchanged status
// is written again every Heartbeat (60 s), which also recreates an object a
// user deleted (the agent's RBAC has get and create on tabbynodes but no
// watch, so the next write is when it notices). A conflict refetches the
// object and writes on top; a failed write (API down, CRD not installed:
// IsNotServed) is retried after RetryMin, doubling up to RetryMax, and
// nothing else is written meanwhile. The first failure is logged as a
// warning, the recovery as info.
//
// What counts as a change: counts, errors, readiness and conditions, the
// datastore and version. lastSync, lastSyncDuration and syncs move with every
// kernel sync, so they are written along with a change or at the heartbeat
// but never cause a write themselves: a node whose pods churn (its counts do
// not move) writes once a minute, not every MinInterval, and a cluster of N
// quiet or churning nodes writes about N/60 times a second.
// lastHeartbeatTime is the time of each write: older than Heartbeat means
// the agent is gone or cut off from the API server.
//
// May import: the standard library, cmd/tabby/agent (the Status type),
// policy/api/v1alpha1, policy/store (Clock), k8s.io/apimachinery and
// k8s.io/client-go/dynamic.
package nodestatus
