package kubestore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store"
)

// apiState is what the store knows of whether a resource's API is served.
type apiState int

const (
	apiUnknown   apiState = iota // optional, discovery has not answered yet
	apiNotServed                 // optional, discovery says not served
	apiWatched                   // the informer runs
)

// watched is the state of one resource during Run. Every field is guarded
// by Store.mu, under which all Handler calls are made.
type watched struct {
	s   *Store
	res *resource
	src policy.Source

	state apiState
	reg   cache.ResourceEventHandlerRegistration
	// apiErr is why the resource cannot be read now (not installed,
	// forbidden, listing fails); nil when it can.
	apiErr error
	// gone: the last list of a running informer answered NotFound (its CRD
	// was removed). It counts as synced: there is nothing to wait for.
	gone bool

	// last is the resourceVersion of the last version seen of each object
	// (key "namespace/name" or "name"), delivered or not: a relist or
	// resync that brings the same version again is ignored.
	last map[string]string
	// delivered: the object's Upsert is the current one the handler holds.
	delivered map[string]bool
	// bad holds the conversion problems of objects whose latest version
	// could not be delivered (their previous version, if any, stays).
	bad map[string][]error
	// reported is the text of the problems last reported, to report only
	// changes.
	reported string
}

func newWatched(s *Store, r *resource) *watched {
	return &watched{
		s: s, res: r, src: policy.Source{File: r.source()},
		last: map[string]string{}, delivered: map[string]bool{}, bad: map[string][]error{},
	}
}

// start creates and runs the informer; called with s.mu held.
func (w *watched) start(ctx context.Context, wg *sync.WaitGroup) error {
	l := w.res.lister(w.s.c)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := l.list(ctx, o)
			w.s.listed(ctx, w, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return w.watchRetrying(ctx, func() (watch.Interface, error) { return l.watch(ctx, o) })
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, l.client),
		w.res.example, cache.SharedIndexInformerOptions{})
	if err := inf.SetTransform(w.res.transform); err != nil {
		return fmt.Errorf("kubestore: %s: %w", w.src.File, err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		// Listing errors are reported as problems by listed; this only
		// keeps client-go's own logging out of the agent's output.
		w.s.log.Debug("watch ended", "resource", w.src.File, "error", err)
	}); err != nil {
		return fmt.Errorf("kubestore: %s: %w", w.src.File, err)
	}
	reg, err := inf.AddEventHandler(w)
	if err != nil {
		return fmt.Errorf("kubestore: %s: %w", w.src.File, err)
	}
	w.reg, w.state = reg, apiWatched
	wg.Go(func() { inf.RunWithContext(ctx) })
	return nil
}

// Retry bounds of a watch the API server refuses (see watchRetrying).
const (
	watchRetryMin = 200 * time.Millisecond
	watchRetryMax = 2 * time.Second
)

// watchRetrying starts a watch, retrying while the API server refuses
// connections. client-go's reflector backs off up to 30 s (plus as much
// again in jitter) per resource when a watch is refused and never resets
// that while the server stays down, so after a 30 s outage an agent would
// hear of changes up to a minute late. Here the wait doubles from
// watchRetryMin to watchRetryMax, with up to 50% jitter so that a cluster's
// agents do not reconnect in lockstep; a refused connection costs the
// server nothing. The outage is reported as a problem of the resource
// (enforcement goes on with what was last read) and cleared when a watch
// starts. Other errors go to the reflector as they are: it relists when
// it must.
func (w *watched) watchRetrying(ctx context.Context, start func() (watch.Interface, error)) (watch.Interface, error) {
	delay := watchRetryMin
	for {
		wi, err := start()
		if err == nil {
			// A watch that starts proves the API readable (with streaming
			// lists the initial list is this watch). Other failures are
			// left to the list the reflector falls back to: a watch that
			// breaks while the API server restarts is no problem worth
			// reporting.
			w.s.listed(ctx, w, nil)
			return wi, nil
		}
		if !utilnet.IsConnectionRefused(err) {
			return nil, err
		}
		w.s.listed(ctx, w, err)
		t := time.NewTimer(delay + rand.N(delay/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, watchRetryMax)
	}
}

// synced reports whether the resource's initial list has been delivered (or
// there is none to wait for).
func (w *watched) synced() bool {
	switch w.state {
	case apiNotServed:
		return true
	case apiWatched:
		return w.gone || w.reg.HasSynced()
	}
	return false
}

// OnAdd implements cache.ResourceEventHandler.
func (w *watched) OnAdd(obj any, _ bool) {
	w.s.withHandler(func(h store.Handler) { w.upsert(h, nil, obj) })
}

// OnUpdate implements cache.ResourceEventHandler. A relist brings every
// object again as an update; upsert drops those it already has.
func (w *watched) OnUpdate(old, obj any) {
	w.s.withHandler(func(h store.Handler) { w.upsert(h, old, obj) })
}

// OnDelete implements cache.ResourceEventHandler. It is called only for an
// object the API server deleted (a watch event), or one a successful relist
// no longer holds (a DeletedFinalStateUnknown tombstone: the delete itself was
// missed). A failed list never gets here: the cache keeps its objects.
func (w *watched) OnDelete(obj any) {
	w.s.withHandler(func(h store.Handler) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			w.s.log.Warn("deleted object without a key", "resource", w.src.File, "object", fmt.Sprintf("%T", obj), "error", err)
			return
		}
		w.remove(h, key)
	})
}

// upsert delivers a new or changed object; old is the previous cached
// version on an update, nil on an add.
func (w *watched) upsert(h store.Handler, old, obj any) {
	m, ok := obj.(metav1.Object)
	if !ok {
		w.s.log.Warn("object without metadata", "resource", w.src.File, "object", fmt.Sprintf("%T", obj))
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		w.s.log.Warn("object without a key", "resource", w.src.File, "error", err)
		return
	}
	if w.res.absent != nil && w.res.absent(obj) {
		w.remove(h, key)
		return
	}
	rv := m.GetResourceVersion()
	if last, seen := w.last[key]; seen && last == rv {
		return // relist or resync: nothing new
	}
	if om, ok := old.(metav1.Object); ok && w.delivered[key] && w.bad[key] == nil &&
		w.last[key] == om.GetResourceVersion() && w.res.same(old, obj) {
		// Only what the store drops changed (a pod's conditions, an
		// annotation): the handler already holds this content.
		w.last[key] = rv
		return
	}
	w.last[key] = rv
	o, err := w.res.convert(w.src, obj)
	if err != nil {
		// The previous version, if any, stays: a bad object never deletes.
		w.bad[key] = flatten(err)
		w.report(h)
		return
	}
	w.delivered[key] = true
	if _, wasBad := w.bad[key]; wasBad {
		delete(w.bad, key)
		w.report(h)
	}
	h.Upsert(o)
}

// remove forgets an object, deleting it from the handler if delivered.
func (w *watched) remove(h store.Handler, key string) {
	delivered := w.delivered[key]
	delete(w.last, key)
	delete(w.delivered, key)
	if _, wasBad := w.bad[key]; wasBad {
		delete(w.bad, key)
		w.report(h)
	}
	if !delivered {
		return
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil { // cannot happen: keys come from MetaNamespaceKeyFunc
		w.s.log.Warn("bad object key", "resource", w.src.File, "key", key, "error", err)
		return
	}
	h.Delete(policy.Ref{Kind: w.res.kind, Namespace: ns, Name: name})
}

// setAPIProblem replaces the resource's API problem (nil clears it).
func (w *watched) setAPIProblem(h store.Handler, err error) {
	w.apiErr = err
	w.report(h)
}

// report sends the resource's current problems if they changed since the
// last report: its API problem first, then each bad object's, by key.
func (w *watched) report(h store.Handler) {
	var errs []error
	if w.apiErr != nil {
		errs = append(errs, w.apiErr)
	}
	keys := make([]string, 0, len(w.bad))
	for k := range w.bad {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		errs = append(errs, w.bad[k]...)
	}
	var text strings.Builder
	for _, e := range errs {
		text.WriteString(e.Error())
		text.WriteByte('\n')
	}
	if text.String() == w.reported {
		return
	}
	w.reported = text.String()
	h.Problems(w.src.File, errs)
}

// listed records the outcome of a list (or of a watch that started) of a
// running informer.
func (s *Store) listed(ctx context.Context, w *watched, err error) {
	if err != nil && ctx.Err() != nil {
		return // stopping
	}
	s.withHandler(func(h store.Handler) {
		w.gone = apierrors.IsNotFound(err)
		switch {
		case err == nil:
			w.setAPIProblem(h, nil)
		case w.gone:
			w.setAPIProblem(h, fmt.Errorf("%s: %w: %s is no longer served (its CRD was removed?); retrying: %w",
				w.src.File, ErrNotInstalled, w.res.gvr.GroupVersion(), err))
		case utilnet.IsConnectionRefused(err):
			w.setAPIProblem(h, fmt.Errorf("%s: cannot reach the API server, enforcing what was last read; retrying: %w",
				w.src.File, err))
		case apierrors.IsForbidden(err):
			w.setAPIProblem(h, fmt.Errorf("%s: %w: RBAC does not let the agent list %s (it needs get, list and watch); retrying: %w",
				w.src.File, ErrForbidden, w.res.gvr.Resource, err))
		default:
			w.setAPIProblem(h, fmt.Errorf("%s: cannot list %s; retrying: %w", w.src.File, w.res.gvr.Resource, err))
		}
	})
}

// flatten splits joined errors into their members.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
