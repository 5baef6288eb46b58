package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tabbynet/tabby/policy"
)

// debouncer decides when a batch runs: Debounce after the latest change,
// but never later than MaxDelay after the first change of the batch, so a
// steady stream of changes cannot postpone enforcement indefinitely.
type debouncer struct {
	window, max time.Duration
	pending     bool
	first       time.Time
}

// kick records a change at now and returns when the batch is due.
func (d *debouncer) kick(now time.Time) time.Time {
	if !d.pending {
		d.pending, d.first = true, now
	}
	due := now.Add(d.window)
	if limit := d.first.Add(d.max); due.After(limit) {
		due = limit
	}
	return due
}

// fire marks the batch as started: the next change opens a new one.
func (d *debouncer) fire() { d.pending = false }

// loop is the one goroutine that computes: it waits for changes, debounces
// them and runs batches, and runs the periodic reconcile.
func (a *Agent) loop(ctx context.Context) {
	a.running.Store(true)
	defer a.running.Store(false)
	clk := a.cfg.Clock
	batchT := clk.NewTimer(time.Hour)
	batchT.Stop()
	reconcileT := clk.NewTimer(a.cfg.ReconcileInterval)
	recheckT := clk.NewTimer(a.cfg.InterfaceRecheck)
	defer func() {
		batchT.Stop()
		a.retry.Stop()
		reconcileT.Stop()
		recheckT.Stop()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.rec.kick:
			gen := a.rec.gen.Load()
			now := clk.Now()
			batchT.Reset(a.deb.kick(now).Sub(now))
			a.seen.Store(gen)
		case <-batchT.C():
			a.deb.fire()
			a.batch()
		case <-a.retry.C():
			a.batch()
		case <-reconcileT.C():
			a.reconcile()
			a.rec.interfacesChanged() // and re-resolve every local interface
			reconcileT.Reset(a.cfg.ReconcileInterval)
		case <-recheckT.C():
			if len(a.pub.pending) > 0 {
				a.rec.wake() // pending interfaces are looked up in every batch
			}
			recheckT.Reset(a.cfg.InterfaceRecheck)
		}
	}
}

// batch applies everything recorded since the last batch and syncs the
// table when it changed (or when the last Sync failed).
func (a *Agent) batch() {
	changes, seen, recheckAll, ok := a.rec.take()
	if !ok {
		return // the initial list is not complete: a partial table would drop rules
	}
	needSync := !a.lastOK
	// A failed Sync's changes are applied by the retry: it inherits when
	// they were seen.
	if !a.unsyncedSeen.IsZero() && (seen.IsZero() || a.unsyncedSeen.Before(seen)) {
		seen = a.unsyncedSeen
	}
	if len(changes) == 0 && !recheckAll && len(a.pub.pending) == 0 && !needSync {
		return
	}
	start := a.cfg.Clock.Now()
	a.busy.Store(start.UnixNano())
	defer a.busy.Store(0)

	ch := a.norm.apply(changes)
	a.pub.apply(ch, recheckAll)
	delta := a.eng.Flush()
	compiled := a.cfg.Clock.Now()
	a.logProblems()
	if delta.Empty() && !needSync {
		a.record(start, compiled, seen, nil, false)
		return
	}
	err := a.cfg.Applier.Sync(a.eng.Table())
	a.record(start, compiled, seen, err, true)
	if err != nil {
		a.lastOK, a.unsyncedSeen = false, seen
		if a.retryDelay == 0 {
			a.retryDelay = a.cfg.RetryMin
		} else {
			a.retryDelay = min(2*a.retryDelay, a.cfg.RetryMax)
		}
		a.retry.Reset(a.retryDelay)
		a.log.Error("sync failed; the kernel keeps its previous state", "error", err, "retry", a.retryDelay.String())
		return
	}
	a.lastOK, a.retryDelay, a.unsyncedSeen = true, 0, time.Time{}
	a.retry.Stop()
	if !a.synced {
		a.synced = true
		a.ready.Store(true)
		a.log.Info("first sync done; ready")
	}
	a.log.Debug("synced", "changes", len(changes), "sets_added", len(delta.SetsAdded),
		"sets_changed", len(delta.SetsChanged), "chains_added", len(delta.ChainsAdded),
		"chains_changed", len(delta.ChainsChanged), "chains_removed", len(delta.ChainsRemoved),
		"compile", compiled.Sub(start).String(), "sync", a.cfg.Clock.Now().Sub(compiled).String())
}

// reconcile runs the Applier's drift check once a Sync has succeeded.
func (a *Agent) reconcile() {
	r, ok := a.cfg.Applier.(Reconciler)
	if !ok || !a.synced {
		return
	}
	a.busy.Store(a.cfg.Clock.Now().UnixNano()) // a hung drift check fails liveness too
	repaired, err := r.Reconcile()
	a.busy.Store(0)
	a.mu.Lock()
	a.snap.LastReconcile = a.cfg.Clock.Now()
	a.snap.ReconcileError = errString(err)
	if repaired {
		a.snap.Repairs++
	}
	a.mu.Unlock()
	switch {
	case err != nil:
		a.log.Error("reconcile failed", "error", err)
	case repaired:
		a.log.Warn("kernel state had drifted from the last sync; repaired")
	}
}

// logProblems logs normalisation, compiler and interface problems once each,
// when they appear.
func (a *Agent) logProblems() {
	seen := map[string]bool{}
	logOnce := func(msg, key string, attrs ...any) {
		seen[key] = true
		if !a.logged[key] {
			a.log.Warn(msg, attrs...)
		}
	}
	a.norm.problems(func(ref policy.Ref, errs []error, kept bool) {
		msg := "invalid object left out"
		if kept {
			msg = "invalid object; enforcing its last valid version"
		}
		for _, err := range errs {
			logOnce(msg, err.Error(), problemAttrs(err)...)
		}
	})
	for _, err := range a.eng.Problems() {
		logOnce("object not compiled", err.Error(), "error", err.Error())
	}
	for _, ref := range slices.SortedFunc(maps.Keys(a.pub.pending), compareRefs) {
		err := a.pub.pending[ref]
		logOnce("local pod has no interface yet; treated as remote until found",
			fmt.Sprintf("iface %v: %v", ref, err), "pod", ref.Namespace+"/"+ref.Name, "reason", err.Error())
	}
	a.logged = seen
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
