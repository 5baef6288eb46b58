// Package kubestore is the agent's Kubernetes datastore: a store.Datastore
// that reads policy objects from the API server with client-go shared
// informers, so that the agent (and the compiler behind it) does not know
// whether objects come from the cluster or from a manifest directory.
//
// In: a *rest.Config (in-cluster or from a kubeconfig) and the node name.
// New validates the configuration and builds clients without network I/O;
// Run watches until its context ends.
//
// Out: store.Handler calls, made under one mutex so that they come one at a
// time from whichever informer goroutine has news:
//   - Upsert(policy.Object) for Namespaces, Pods, ServiceAccounts,
//     networking.k8s.io/v1 NetworkPolicies, policy.networking.k8s.io/v1alpha2
//     ClusterNetworkPolicies and the tabby.dev/v1alpha1 Tiers,
//     NetworkPolicies, GlobalNetworkPolicies, NetworkSets and
//     GlobalNetworkSets. Each object is what policy.Decode returns for the
//     same object in a manifest: the typed value with apiVersion and kind
//     set, and the same Ref. Source.File names the resource
//     ("kubernetes:pods", "kubernetes:networkpolicies.networking.k8s.io",
//     "kubernetes:tiers.tabby.dev"), Source.Doc is 0.
//   - Delete(policy.Ref) when an object is gone.
//   - Synced() once, when every running informer has delivered its initial
//     list and every optional API has been found or found missing. Informers
//     list concurrently, so a change to a kind listed early may come before
//     Synced while another kind is still listing: the handler holds it as
//     part of the initial state, as it would if the list had been later.
//   - Problems(source, errs) per resource (source is its Source.File), with
//     only changes reported: objects that cannot be converted
//     (*policy.FieldError, one per field) and APIs that cannot be read
//     (errors wrapping ErrNotInstalled, ErrForbidden or the client's error).
//
// # Watching only what is needed
//
// Core and networking kinds are read with the typed clientset in protobuf,
// ClusterNetworkPolicies with the network-policy-api clientset, the
// tabby.dev kinds with the dynamic client and converted with
// runtime.DefaultUnstructuredConverter in strict mode. Every kind drops
// managedFields and annotations before the informer caches it. Pods are
// watched cluster-wide, because selectors match remote pods' labels,
// namespaces and service accounts, rules reach their addresses and named
// ports resolve on the destination pod, but trimmed by the informer's
// TransformFunc to what policy reads: name, namespace, uid, labels,
// resourceVersion, spec.nodeName, spec.serviceAccountName (and the
// deprecated serviceAccount), spec.hostNetwork, the name and ports of
// containers and init containers (with an init container's restartPolicy,
// which makes it a sidecar), status.podIP(s) and status.phase.
//
// Host-networked and terminated pods are never endpoints: NetworkPolicy does
// not apply to a pod on the node's network namespace (its addresses are the
// node's), and a Succeeded or Failed pod's addresses may already belong to a
// new pod. policy.normalizePod skips both; this store does not even deliver
// them. A field selector (spec.hostNetwork=false, status.phase not Succeeded
// or Failed) keeps them off the wire, so a pod that terminates gets a DELETED
// event and is delivered as a Delete; an object the server sends anyway is
// handled as absent too.
//
// # Missing APIs and RBAC
//
// ClusterNetworkPolicies and the tabby.dev kinds exist only when their CRDs
// are installed. For these the store asks discovery first. A resource that
// is not served is reported as a problem (ErrNotInstalled, naming the
// resource and saying it is not watched), counts as synced with no objects,
// and is looked for again every RecheckInterval; when it appears its
// informer starts, its objects arrive as ordinary upserts and the problem is
// cleared. While discovery fails for another reason the answer is unknown:
// the problem is reported, discovery retried with backoff, and Synced waits,
// because treating a served API as missing would loosen enforcement.
//
// Every list's outcome is watched: a list that fails is reported as a
// problem of its resource (Forbidden wraps ErrForbidden, NotFound, a CRD
// removed under a running informer, ErrNotInstalled), and the first list or
// watch that succeeds afterwards clears it. Forbidden is not a crash: the
// informer keeps retrying with client-go's backoff. It does hold Synced
// back: an agent that cannot see pods or policies would enforce less than
// the cluster asks for, so it stays not ready and says why.
//
// # Relists, restarts, bad objects
//
// Enforcement never loosens because of the API server: an informer keeps its
// objects while the server is down or a list fails, and Delete is sent only
// for an object deleted by a watch event or missing from a successful relist
// (a cache.DeletedFinalStateUnknown tombstone), that is, really gone. A
// relist brings every object again (an expired watch relists, and so does
// every informer after an API server restart, measured with client-go's
// streaming lists): one whose resourceVersion the store has already seen is
// not delivered again, nor is an update that only changed what the store
// drops (a pod's conditions, an annotation).
//
// An object that cannot be converted (an unknown field, from a CRD newer
// than this agent or one that preserves unknown fields) is reported with
// its field and is not delivered; the version delivered before STAYS until a
// good version replaces it (clearing the problem) or the object is deleted.
//
// May import: the standard library, policy/, policy/api/v1alpha1,
// policy/store, k8s.io/{api,apimachinery,client-go} and
// sigs.k8s.io/network-policy-api. Nothing of the compiler, the agent or the
// kernel dataplane.
package kubestore
