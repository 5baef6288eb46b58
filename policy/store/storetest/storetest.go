// Package storetest holds test doubles for store users: a fake Clock whose
// time moves only when told, and a Handler that records every call.
//
// May import: the standard library, policy/, policy/store.
package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store"
)

// FakeClock is a store.Clock that moves only on Advance. Timers fire (a
// non-blocking send on their channel, as time.Timer) when Advance passes
// their deadline.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{} // closed and replaced whenever a timer is armed
}

// NewFakeClock returns a fake clock at t.
func NewFakeClock(t time.Time) *FakeClock {
	return &FakeClock{now: t, changed: make(chan struct{})}
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires d after the current fake time.
func (c *FakeClock) NewTimer(d time.Duration) store.Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the time by d and fires the timers due, in deadline order.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var due []*fakeTimer
	for _, t := range c.timers {
		if t.armed && !t.at.After(now) {
			due = append(due, t)
		}
	}
	slices.SortFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.armed = false
		select {
		case t.ch <- t.at:
		default:
		}
	}
	c.mu.Unlock()
}

// Armed lists the deadlines of the armed timers, sorted.
func (c *FakeClock) Armed() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, t := range c.timers {
		if t.armed {
			out = append(out, t.at)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// WaitArmed blocks until a timer is armed with deadline at, or ctx ends. It
// lets a test advance time only once the code under test is waiting.
func (c *FakeClock) WaitArmed(ctx context.Context, at time.Time) error {
	for {
		c.mu.Lock()
		ch := c.changed
		for _, t := range c.timers {
			if t.armed && t.at.Equal(at) {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("no timer armed for %v (armed: %v): %w", at, c.Armed(), ctx.Err())
		}
	}
}

type fakeTimer struct {
	c     *FakeClock
	ch    chan time.Time
	at    time.Time
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	t.drain()
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.drain() // Go 1.23 semantics: no stale value after Reset
	if d <= 0 {
		// As time.Timer: a timer reset to a zero or negative duration fires
		// at once, without waiting for Advance.
		t.armed = false
		t.ch <- t.c.now
		return was
	}
	t.at, t.armed = t.c.now.Add(d), true
	if !slices.Contains(t.c.timers, t) {
		t.c.timers = append(t.c.timers, t)
	}
	close(t.c.changed)
	t.c.changed = make(chan struct{})
	return was
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

// Call is one recorded Handler call.
type Call struct {
	Op       string // "upsert", "delete", "synced", "problems"
	Object   policy.Object
	Ref      policy.Ref
	Source   string  // problems
	Problems []error // problems
}

func (c Call) String() string {
	switch c.Op {
	case "upsert":
		return "upsert " + c.Object.Ref.String() + " from " + c.Object.Source.String()
	case "delete":
		return "delete " + c.Ref.String()
	case "problems":
		return fmt.Sprintf("problems %s: %d", c.Source, len(c.Problems))
	}
	return c.Op
}

// Recorder is a store.Handler that records every call. Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	calls  []Call
	notify chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{notify: make(chan struct{})} }

func (r *Recorder) add(c Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// Upsert implements store.Handler.
func (r *Recorder) Upsert(o policy.Object) { r.add(Call{Op: "upsert", Object: o, Ref: o.Ref}) }

// Delete implements store.Handler.
func (r *Recorder) Delete(ref policy.Ref) { r.add(Call{Op: "delete", Ref: ref}) }

// Synced implements store.Handler.
func (r *Recorder) Synced() { r.add(Call{Op: "synced"}) }

// Problems implements store.Handler.
func (r *Recorder) Problems(source string, errs []error) {
	r.add(Call{Op: "problems", Source: source, Problems: slices.Clone(errs)})
}

// Calls returns a copy of the calls so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Take returns the calls so far and forgets them.
func (r *Recorder) Take() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// WaitFor blocks until cond holds for the calls recorded so far (not yet
// taken), or ctx ends.
func (r *Recorder) WaitFor(ctx context.Context, cond func([]Call) bool) error {
	for {
		r.mu.Lock()
		ok, ch := cond(r.calls), r.notify
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for handler calls (have %v): %w", r.Calls(), ctx.Err())
		}
	}
}
