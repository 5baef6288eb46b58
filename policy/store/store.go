package store

import (
	"context"
	"time"

	"github.com/tabbynet/tabby/policy"
)

// Handler receives what a Datastore reads. Calls come from one goroutine at a
// time and must return quickly: record, never compute.
type Handler interface {
	// Upsert reports a new or changed object.
	Upsert(obj policy.Object)
	// Delete reports that the object with ref is gone.
	Delete(ref policy.Ref)
	// Synced reports that the initial list is complete: every object that
	// existed when the datastore started has been delivered. Called once,
	// before any later change.
	Synced()
	// Problems replaces the current problems of one source (a file path; ""
	// for the datastore as a whole). An empty errs clears them. Decoding
	// problems are *policy.FieldError values.
	Problems(source string, errs []error)
}

// Observer is optionally implemented by a Handler that wants to know when a
// change was first noticed, before the datastore has read and decoded it: the
// directory datastore calls Observed with the time it received an inotify
// event (or started a rescan), then makes the Upsert/Delete calls that event
// leads to, if any. The agent reports change-to-enforced latency from it. A
// datastore that does not call it (the Kubernetes one: a watch event is
// delivered as it is decoded) lets the handler stamp Upsert/Delete itself.
type Observer interface {
	Observed(t time.Time)
}

// Datastore is a source of policy objects.
type Datastore interface {
	// Run delivers the initial list, then Synced, then changes, until ctx is
	// done. It returns nil when ctx ends, or an error when it cannot start.
	Run(ctx context.Context, h Handler) error
}

// Clock is the time source of datastores and of the agent loop; tests inject
// a fake one (storetest.FakeClock).
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer, as time.Timer (Go 1.23 semantics: after Stop or
// Reset no stale value is received).
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// RealClock is the system clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
