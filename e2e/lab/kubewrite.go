package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/tabbynet/tabby/policy"
)

// kubeWriter writes the lab's objects to the API server. It remembers what
// it last wrote and the resourceVersion that write produced, so an object
// nobody touched since is not written again, while one changed behind the
// lab's back (kubectl) is; and it notes when a write last changed something,
// which WaitSynced waits for the agents to have seen.
type kubeWriter struct {
	dyn dynamic.Interface

	mu        sync.Mutex
	written   map[writeKey]writeRecord
	changedAt time.Time // start of the latest write that changed the API
	// createdAt and statusAt are when the latest creation of each object
	// and the latest write of each pod's status began (PodWrites).
	createdAt, statusAt map[policy.Ref]time.Time
}

// writeKey names an object's body or (status) a pod's status.
type writeKey struct {
	ref    policy.Ref
	status bool
}

type writeRecord struct {
	enc []byte
	rv  string // resourceVersion right after the write
}

func newKubeWriter(dyn dynamic.Interface) *kubeWriter {
	return &kubeWriter{dyn: dyn, written: map[writeKey]writeRecord{},
		createdAt: map[policy.Ref]time.Time{}, statusAt: map[policy.Ref]time.Time{}}
}

func (w *kubeWriter) resource(ao *apiObject) dynamic.ResourceInterface {
	r := w.dyn.Resource(ao.info.gvr)
	if ao.info.namespaced {
		return r.Namespace(ao.ref.Namespace)
	}
	return r
}

// current is what the API server holds: resourceVersion by Ref. Writes
// running in parallel share it: it is read and changed only under the
// writer's mu.
type current map[policy.Ref]string

// list reads the resourceVersion of every object of the lab's kinds.
func (w *kubeWriter) list(ctx context.Context) (current, error) {
	out := current{}
	var mu sync.Mutex
	kinds := slices.Collect(maps.Keys(apiKinds))
	errs := make([]error, len(kinds))
	var wg sync.WaitGroup
	for i, k := range kinds {
		wg.Go(func() {
			info := apiKinds[k]
			ul, err := w.dyn.Resource(info.gvr).List(ctx, metav1.ListOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("lab: list %s: %w", info.gvr.Resource, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, u := range ul.Items {
				ref := policy.Ref{Kind: k, Name: u.GetName()}
				if info.namespaced {
					ref.Namespace = u.GetNamespace()
				}
				out[ref] = u.GetResourceVersion()
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// write runs one write of key and records it: skipped when the lab wrote
// the same before and the object is unchanged since (resourceVersion), and
// a change when the resourceVersion it produced differs from before.
func (w *kubeWriter) write(cur current, key writeKey, enc []byte, f func() (*unstructured.Unstructured, error)) error {
	w.mu.Lock()
	before, exists := cur[key.ref]
	rec, known := w.written[key]
	w.mu.Unlock()
	if exists && known && rec.rv == before && string(rec.enc) == string(enc) {
		return nil
	}
	start := time.Now()
	u, err := f()
	if err != nil {
		return err
	}
	rv := u.GetResourceVersion()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written[key] = writeRecord{enc: enc, rv: rv}
	switch {
	case key.status:
		w.statusAt[key.ref] = start
	case !exists:
		w.createdAt[key.ref] = start
	}
	if rv != before || !exists {
		if start.After(w.changedAt) {
			w.changedAt = start
		}
	}
	// A body write changes the version a status record was made at, and the
	// other way round: both records follow the object.
	other := writeKey{ref: key.ref, status: !key.status}
	if o, ok := w.written[other]; ok && o.rv == before {
		w.written[other] = writeRecord{enc: o.enc, rv: rv}
	}
	cur[key.ref] = rv
	return nil
}

// apply creates or updates ao's body (server-side apply, forced: the
// lab's objects are the lab's). A resource that is not served yet (a CRD
// just established) is retried briefly.
func (w *kubeWriter) apply(ctx context.Context, cur current, ao *apiObject) error {
	return w.write(cur, writeKey{ref: ao.ref}, ao.enc, func() (*unstructured.Unstructured, error) {
		u := &unstructured.Unstructured{Object: ao.body}
		for attempt := 0; ; attempt++ {
			out, err := w.resource(ao).Apply(ctx, ao.ref.Name, u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
			if err == nil {
				return out, nil
			}
			if !apierrors.IsNotFound(err) || attempt >= 50 {
				return nil, fmt.Errorf("lab: apply %s: %w", ao.ref, err)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("lab: apply %s: %w", ao.ref, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// applyStatus writes a pod's status as the kubelet would.
func (w *kubeWriter) applyStatus(ctx context.Context, cur current, ao *apiObject) error {
	return w.write(cur, writeKey{ref: ao.ref, status: true}, ao.statusEnc, func() (*unstructured.Unstructured, error) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": ao.ref.Name, "namespace": ao.ref.Namespace},
			"status":   ao.status,
		}}
		out, err := w.resource(ao).ApplyStatus(ctx, ao.ref.Name, u, metav1.ApplyOptions{FieldManager: kubeletFieldManager, Force: true})
		if err != nil {
			return nil, fmt.Errorf("lab: pod %s/%s status: %w", ao.ref.Namespace, ao.ref.Name, err)
		}
		return out, nil
	})
}

// remove deletes ao if the API server has it. Pods go at once (grace 0),
// as a kubelet confirms a deletion once the pod is torn down; a namespace
// is finalized (see finalizeNamespace).
func (w *kubeWriter) remove(ctx context.Context, cur current, ao *apiObject) error {
	w.mu.Lock()
	_, exists := cur[ao.ref]
	w.mu.Unlock()
	if !exists {
		return nil
	}
	opts := metav1.DeleteOptions{}
	if ao.ref.Kind == policy.KindPod {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	start := time.Now()
	if err := w.resource(ao).Delete(ctx, ao.ref.Name, opts); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("lab: delete %s: %w", ao.ref, err)
	}
	w.mu.Lock()
	delete(w.written, writeKey{ref: ao.ref})
	delete(w.written, writeKey{ref: ao.ref, status: true})
	if start.After(w.changedAt) {
		w.changedAt = start
	}
	delete(cur, ao.ref)
	w.mu.Unlock()
	if ao.ref.Kind == policy.KindNamespace {
		return w.finalizeNamespace(ctx, ao.ref.Name)
	}
	return nil
}

// lastChange is when the latest write that changed the API began.
func (w *kubeWriter) lastChange() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changedAt
}

// namespacedResources are emptied before a namespace is finalized.
var namespacedResources = func() []schema.GroupVersionResource {
	var out []schema.GroupVersionResource
	for _, k := range apiKinds {
		if k.namespaced {
			out = append(out, k.gvr)
		}
	}
	return out
}()

// finalizeNamespace plays the namespace controller, which this control
// plane lacks: without it a deleted namespace stays Terminating forever,
// and a later step could not create it again. Whatever of the lab's kinds
// is left in it is deleted, then the finalizer is removed.
func (w *kubeWriter) finalizeNamespace(ctx context.Context, name string) error {
	for _, gvr := range namespacedResources {
		opts := metav1.DeleteOptions{}
		if gvr.Resource == "pods" {
			zero := int64(0)
			opts.GracePeriodSeconds = &zero
		}
		err := w.dyn.Resource(gvr).Namespace(name).DeleteCollection(ctx, opts, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("lab: empty namespace %s of %s: %w", name, gvr.Resource, err)
		}
	}
	nsRes := w.dyn.Resource(apiKinds[policy.KindNamespace].gvr)
	u, err := nsRes.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: finalize namespace %s: %w", name, err)
	}
	if err := unstructured.SetNestedStringSlice(u.Object, nil, "spec", "finalizers"); err != nil {
		return fmt.Errorf("lab: finalize namespace %s: %w", name, err)
	}
	if _, err := nsRes.Update(ctx, u, metav1.UpdateOptions{}, "finalize"); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("lab: finalize namespace %s: %w", name, err)
	}
	return nil
}

// inParallel runs f on every object of objs, a few at a time, and joins
// the errors: objects of one stage do not depend on each other.
func inParallel(objs []*apiObject, f func(*apiObject) error) error {
	errs := make([]error, len(objs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, ao := range objs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(ao)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// byStage groups objects by stage, each group sorted by Ref.
func byStage(objs []*apiObject) [][]*apiObject {
	stages := make([][]*apiObject, podStage+1)
	for _, ao := range objs {
		stages[ao.info.stage] = append(stages[ao.info.stage], ao)
	}
	for _, s := range stages {
		slices.SortFunc(s, func(a, b *apiObject) int { return compareRefs(a.ref, b.ref) })
	}
	return stages
}

func compareRefs(a, b policy.Ref) int {
	if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// systemRef reports whether ref is, or is in, one of the cluster's own
// namespaces other than default, or deploy's agent namespace.
func systemRef(ref policy.Ref) bool {
	ns := ref.Namespace
	if ref.Kind == policy.KindNamespace {
		ns = ref.Name
	}
	return ns != "" && ns != "default" && slices.Contains(systemNamespaces, ns)
}

// protected reports whether the lab leaves an object alone even when its
// desired state lacks it: system objects (systemRef) and the default
// namespace itself.
func protected(ref policy.Ref) bool {
	return systemRef(ref) || (ref.Kind == policy.KindNamespace && ref.Name == "default")
}

// kubeUpdate makes the API server hold exactly placed (of the kinds the lab
// manages, outside protected namespaces), whatever it holds now: objects
// the lab wrote and nobody changed are left alone, others are applied,
// and objects not in placed are deleted (also those made with kubectl).
// A non-nil scope limits all that to its objects (and the namespaces they
// need, if missing). The lab plays kubelet for the pods d adds and
// removes: a leaving pod is deleted from the API, then torn down; an
// arriving pod is created, built, then given its status. It returns when
// the latest effective write began (zero: the API already held placed).
func (l *Lab) kubeUpdate(ctx context.Context, placed []policy.Object, d podDiff, scope map[policy.Ref]bool) (time.Time, error) {
	w := l.kube.writer
	w.mu.Lock()
	w.changedAt = time.Time{}
	w.mu.Unlock()
	want, err := l.apiObjects(placed)
	if err != nil {
		return time.Time{}, err
	}
	cur, err := w.list(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if scope != nil {
		inScope := func(ref policy.Ref) bool {
			if scope[ref] {
				return true
			}
			// A namespace an applied object needs, if it is missing.
			_, exists := cur[ref]
			return ref.Kind == policy.KindNamespace && !exists && slices.ContainsFunc(slices.Collect(maps.Keys(scope)),
				func(r policy.Ref) bool { return r.Namespace == ref.Name && want[r] != nil })
		}
		maps.DeleteFunc(want, func(ref policy.Ref, _ *apiObject) bool { return !inScope(ref) })
		maps.DeleteFunc(cur, func(ref policy.Ref, _ string) bool { return !scope[ref] && want[ref] == nil })
	}
	// Leaving pods first: an arriving pod may reuse a leaving pod's address.
	for _, ref := range d.removed {
		if err := w.remove(ctx, cur, &apiObject{ref: ref, info: apiKinds[policy.KindPod]}); err != nil {
			return time.Time{}, err
		}
		if err := l.removePod(ctx, ref); err != nil {
			return time.Time{}, err
		}
	}
	stages := byStage(slices.Collect(maps.Values(want)))
	for _, s := range stages[:podStage] {
		if err := inParallel(s, func(ao *apiObject) error { return w.apply(ctx, cur, ao) }); err != nil {
			return time.Time{}, err
		}
	}
	if err := l.kubePods(ctx, cur, stages[podStage], d); err != nil {
		return time.Time{}, err
	}
	var gone []*apiObject
	for ref := range cur {
		if want[ref] == nil && !protected(ref) {
			gone = append(gone, &apiObject{ref: ref, info: apiKinds[ref.Kind]})
		}
	}
	gstages := byStage(gone)
	for i := len(gstages) - 1; i >= 0; i-- {
		if err := inParallel(gstages[i], func(ao *apiObject) error { return w.remove(ctx, cur, ao) }); err != nil {
			return time.Time{}, err
		}
	}
	return w.lastChange(), nil
}

// kubePods writes the pods. A pod new to the lab is created, built
// (namespace, interface, routes, server) and then given its status: the
// kubelet's order. A pod the lab has is applied (labels may change) with its
// status; if the API server refuses the change (pod specs are mostly
// immutable), it is deleted and created again, its network left as it is.
func (l *Lab) kubePods(ctx context.Context, cur current, pods []*apiObject, d podDiff) error {
	w := l.kube.writer
	added := map[policy.Ref]podPlan{}
	for _, pp := range d.added {
		added[pp.Ref] = pp
	}
	var fresh, kept []*apiObject
	for _, ao := range pods {
		if _, ok := added[ao.ref]; ok {
			fresh = append(fresh, ao)
		} else {
			kept = append(kept, ao)
		}
	}
	err := inParallel(kept, func(ao *apiObject) error {
		err := w.apply(ctx, cur, ao)
		if apierrors.IsInvalid(err) {
			if err := w.remove(ctx, cur, ao); err != nil {
				return err
			}
			err = w.apply(ctx, cur, ao)
		}
		if err != nil {
			return err
		}
		return w.applyStatus(ctx, cur, ao)
	})
	if err != nil {
		return err
	}
	if err := inParallel(fresh, func(ao *apiObject) error { return w.apply(ctx, cur, ao) }); err != nil {
		return err
	}
	for _, ao := range fresh {
		if err := l.addPod(ctx, added[ao.ref]); err != nil {
			return err
		}
	}
	return inParallel(fresh, func(ao *apiObject) error { return w.applyStatus(ctx, cur, ao) })
}
