package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tabbynet/tabby/policy"
)

// KubeAccess is how a test or a user reaches a Kubernetes-mode lab's API.
type KubeAccess struct {
	// Config and Client are the admin's (system:masters). They dial from
	// inside the control plane's namespace, so they work in this process
	// without the forwarder; copy Config (rest.CopyConfig) to change it.
	Config  *rest.Config
	Client  *kubernetes.Clientset
	Dynamic dynamic.Interface
	// Kubeconfig is the admin's kubeconfig for kubectl on the host (via the
	// loopback forwarder), Kubectl the v1.35 kubectl binary.
	Kubeconfig string
	Kubectl    string
	// URL is the API server on the underlay, as the agents reach it.
	URL string
}

// Kube returns the lab's API access, or ErrNotKubernetes.
func (l *Lab) Kube() (*KubeAccess, error) {
	if l.kube == nil {
		return nil, ErrNotKubernetes
	}
	return &KubeAccess{Config: l.kube.cp.Config, Client: l.kube.cp.Client, Dynamic: l.kube.dyn,
		Kubeconfig: l.st.Kubernetes.Kubeconfig, Kubectl: l.kube.cp.Binaries.Kubectl, URL: l.st.Kubernetes.URL}, nil
}

// StopAPIServer kills kube-apiserver (SIGKILL: a crash) and leaves etcd and
// the agents running. If a replica runs (StartAPIServerReplica), the lab's
// own API calls fail over to it until StartAPIServer.
func (l *Lab) StopAPIServer() error {
	if l.kube == nil {
		return ErrNotKubernetes
	}
	if err := l.kube.cp.StopAPIServer(); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if l.kube.replica != nil {
		l.kube.writer.dyn = l.kube.replicaDyn
	}
	return nil
}

// StartAPIServer starts kube-apiserver again (same port and certificates,
// same etcd) and waits for its /readyz; the agents reconnect on their own,
// and the lab's own API calls go to it again.
func (l *Lab) StartAPIServer() error {
	if l.kube == nil {
		return ErrNotKubernetes
	}
	if err := l.kube.cp.StartAPIServer(); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.kube.writer.dyn = l.kube.dyn
	return nil
}

// StartAPIServerReplica runs a second kube-apiserver on the same etcd, at
// APIServerReplicaPort of the control plane's address, as an HA control
// plane has another server behind its load balancer, and returns the
// admin's access to it (Kubeconfig is empty: it has no forwarder; URL is
// reachable from the lab's namespaces). The agents keep using the first
// one only, so while StopAPIServer has that down they are cut off, but the
// cluster is not: the lab's own API calls (Apply, Delete, UpdateManifests,
// APIObjects and its kubelet's pod statuses) fail over to the replica, so
// a test can change the cluster meanwhile, pods included. Down stops it
// with the rest of the control plane, also from another process; a lab
// from Open does not fail over to it.
func (l *Lab) StartAPIServerReplica(ctx context.Context) (*KubeAccess, error) {
	if l.kube == nil {
		return nil, ErrNotKubernetes
	}
	if l.kube.replica != nil {
		return nil, errors.New("lab: an API server replica is already running")
	}
	r, err := l.kube.cp.StartReplica(ctx, APIServerReplicaPort)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	dyn, err := dynamic.NewForConfig(r.Config)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lab: %w", err), l.kube.cp.StopReplica(r))
	}
	l.kube.replica, l.kube.replicaDyn = r, dyn
	if !l.kube.cp.APIServerRunning() {
		l.kube.writer.dyn = dyn
	}
	return &KubeAccess{Config: r.Config, Client: r.Client, Dynamic: dyn, Kubectl: l.kube.cp.Binaries.Kubectl, URL: r.URL}, nil
}

// StopAPIServerReplica kills the replica; the lab's own API calls go to
// the first API server again (and fail while it is stopped).
func (l *Lab) StopAPIServerReplica() error {
	if l.kube == nil {
		return ErrNotKubernetes
	}
	if l.kube.replica == nil {
		return errors.New("lab: no API server replica is running")
	}
	err := l.kube.cp.StopReplica(l.kube.replica)
	l.kube.replica, l.kube.replicaDyn = nil, nil
	l.kube.writer.dyn = l.kube.dyn
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Apply creates or replaces objects (by Ref) in the lab's desired state
// (Objects) and makes it so: through the API server in Kubernetes mode,
// where only these objects are written (changes made with kubectl to
// others stay; a pod is created, built and given its status, as a kubelet
// would), in the agents' manifests otherwise. WaitSynced then waits for the
// agents.
func (l *Lab) Apply(ctx context.Context, objs ...policy.Object) error {
	merged := slices.Clone(l.objs)
	scope := map[policy.Ref]bool{}
	for _, o := range objs {
		scope[o.Ref] = true
		if i := slices.IndexFunc(merged, func(m policy.Object) bool { return m.Ref == o.Ref }); i >= 0 {
			merged[i] = o
		} else {
			merged = append(merged, o)
		}
	}
	return l.update(ctx, merged, scope)
}

// Delete removes objects (by Ref) from the lab's desired state and makes it
// so, as Apply does; a deleted pod is deleted from the API server, then
// torn down. Refs the lab does not have are ignored.
func (l *Lab) Delete(ctx context.Context, refs ...policy.Ref) error {
	kept := slices.DeleteFunc(slices.Clone(l.objs), func(o policy.Object) bool { return slices.Contains(refs, o.Ref) })
	scope := map[policy.Ref]bool{}
	for _, r := range refs {
		scope[r] = true
	}
	return l.update(ctx, kept, scope)
}

// PodWrites is when the lab last began to create pod ns/name in the API
// server and to write its status (podIP, phase Running) as kubelet: for a
// pod Apply adds, the status follows once the pod is built. Zero for what
// this Lab value has not written (or outside Kubernetes mode).
func (l *Lab) PodWrites(ns, name string) (created, status time.Time) {
	if l.kube == nil {
		return time.Time{}, time.Time{}
	}
	w := l.kube.writer
	ref := policy.Ref{Kind: policy.KindPod, Namespace: ns, Name: name}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.createdAt[ref], w.statusAt[ref]
}

// APIObjects reads the objects of every kind the agents enforce from the API
// server (outside the cluster's own and the agents' namespaces), decoded
// as package policy decodes manifests: what compiler/sim must be given to
// predict the lab after changes made with kubectl or a client of Kube.
func (l *Lab) APIObjects(ctx context.Context) ([]policy.Object, error) {
	if l.kube == nil {
		return nil, ErrNotKubernetes
	}
	// One list per kind, all at once: sequential lists would make reading
	// the API back cost more than waiting for the agents.
	kinds := slices.Sorted(maps.Keys(apiKinds))
	lists := make([][]policy.Object, len(kinds))
	errs := make([]error, len(kinds))
	var wg sync.WaitGroup
	for i, k := range kinds {
		wg.Go(func() { lists[i], errs[i] = l.apiObjectsOf(ctx, k) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := slices.Concat(lists...)
	slices.SortFunc(out, func(a, b policy.Object) int { return compareRefs(a.Ref, b.Ref) })
	return out, nil
}

// apiObjectsOf reads the objects of one kind for APIObjects.
func (l *Lab) apiObjectsOf(ctx context.Context, k policy.Kind) ([]policy.Object, error) {
	info := apiKinds[k]
	ul, err := l.kube.writer.dyn.Resource(info.gvr).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("lab: list %s: %w", info.gvr.Resource, err)
	}
	var out []policy.Object
	for _, u := range ul.Items {
		ref := policy.Ref{Kind: k, Name: u.GetName()}
		if info.namespaced {
			ref.Namespace = u.GetNamespace()
		}
		if systemRef(ref) {
			continue // the cluster's own, or the agents'
		}
		u.SetManagedFields(nil)
		data, err := u.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("lab: %s: %w", ref, err)
		}
		o, err := policy.DecodeDocument(policy.Source{File: l.st.Kubernetes.URL}, data)
		if err != nil {
			return nil, fmt.Errorf("lab: %s from the API: %w", ref, err)
		}
		out = append(out, o)
	}
	return out, nil
}
