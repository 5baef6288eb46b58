package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// TabbyNode reports what the Tabby agent of one node enforces. It is
// cluster-scoped and named after the node; the agent creates it (owned by the
// Node, so it is garbage-collected with it) and writes only its status.
// Users read it with `kubectl get tabbynodes`.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=tabby
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=boolean,JSONPath=".status.ready"
// +kubebuilder:printcolumn:name="Policies",type=integer,JSONPath=".status.policies"
// +kubebuilder:printcolumn:name="Local",type=integer,JSONPath=".status.localEndpoints"
// +kubebuilder:printcolumn:name="Endpoints",type=integer,JSONPath=".status.endpoints"
// +kubebuilder:printcolumn:name="Errors",type=integer,JSONPath=".status.errorCount"
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=".status.lastSync"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +genclient:nonNamespaced
type TabbyNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is written by the node's agent.
	// +optional
	Status TabbyNodeStatus `json:"status,omitzero"`
}

// TabbyNodeStatus is one agent's report.
type TabbyNodeStatus struct {
	// Ready is true once the agent has programmed the kernel after its first
	// full read of the datastore, and while its last sync succeeded.
	// +optional
	Ready bool `json:"ready,omitempty"`
	// Datastore is where the agent reads policy from: kubernetes or manifests.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Datastore string `json:"datastore,omitempty"`
	// AgentVersion is the agent's build version.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	AgentVersion string `json:"agentVersion,omitempty"`
	// LastHeartbeatTime is when the agent last wrote this status. It writes
	// at least once a minute, so an older time means the agent is not
	// running or cannot reach the API server (its node keeps enforcing what
	// it last programmed).
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// LastSync is when the agent last programmed the kernel successfully.
	// Refreshed with other changes of this status or at the next heartbeat,
	// so it may be up to a minute old on a node whose only change is churn.
	// +optional
	LastSync *metav1.Time `json:"lastSync,omitempty"`
	// LastSyncDuration is how long that sync took (a Go duration, e.g. 1.2ms).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	LastSyncDuration string `json:"lastSyncDuration,omitempty"`
	// Syncs counts the agent's kernel transactions since it started (as
	// LastSync, refreshed with other changes or at the next heartbeat).
	// +optional
	Syncs int64 `json:"syncs,omitempty"`
	// LastSyncError is the error of the last sync when it failed.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	LastSyncError string `json:"lastSyncError,omitempty"`
	// Policies is the number of policies (of every kind) programmed.
	// +optional
	Policies int32 `json:"policies,omitempty"`
	// Endpoints is the number of pods (cluster-wide) whose addresses are in
	// this node's sets.
	// +optional
	Endpoints int32 `json:"endpoints,omitempty"`
	// LocalEndpoints is the number of this node's pods that are enforced.
	// +optional
	LocalEndpoints int32 `json:"localEndpoints,omitempty"`
	// NetworkSets is the number of network sets programmed.
	// +optional
	NetworkSets int32 `json:"networkSets,omitempty"`
	// ErrorCount is the number of current problems (objects left out or
	// enforced at their last valid version, pods without an interface).
	// +optional
	ErrorCount int32 `json:"errorCount,omitempty"`
	// Errors lists the current problems, at most 50 (ErrorCount has them all).
	// +optional
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=1024
	Errors []string `json:"errors,omitempty"`
	// Conditions: Ready and Synced, with reasons.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TabbyNodeList is a list of TabbyNodes.
// +kubebuilder:object:root=true
type TabbyNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TabbyNode `json:"items"`
}
