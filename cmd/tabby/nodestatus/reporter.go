package nodestatus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/policy/store"
)

// Defaults of Config.
const (
	DefaultMinInterval    = 2 * time.Second
	DefaultHeartbeat      = 60 * time.Second
	DefaultPoll           = 500 * time.Millisecond
	DefaultRetryMin       = 2 * time.Second
	DefaultRetryMax       = 30 * time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// Config configures a Reporter. Client, Node and Source are required; zero
// durations take the defaults above.
type Config struct {
	Client dynamic.Interface   // the API server (tabbynodes, tabbynodes/status, nodes)
	Node   string              // the TabbyNode's name and its owner Node's
	Source func() agent.Status // the agent's status; called often, must be cheap
	// Datastore and AgentVersion are copied into the status.
	Datastore, AgentVersion string
	Logger                  *slog.Logger // default slog.Default()
	Clock                   store.Clock  // default store.RealClock

	// A changed status is written at most once per MinInterval; an unchanged
	// one is written again (which also recreates a deleted object) every
	// Heartbeat.
	MinInterval, Heartbeat time.Duration
	// Poll is how often Source is sampled for changes (Notify samples at
	// once).
	Poll time.Duration
	// A failed write is retried after RetryMin, doubling up to RetryMax; no
	// other write is tried meanwhile.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
}

func (c *Config) defaults() error {
	switch {
	case c.Client == nil:
		return errors.New("nodestatus: Config.Client is required")
	case c.Node == "":
		return errors.New("nodestatus: Config.Node is required")
	case c.Source == nil:
		return errors.New("nodestatus: Config.Source is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinInterval, DefaultMinInterval)
	def(&c.Heartbeat, DefaultHeartbeat)
	def(&c.Poll, DefaultPoll)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.RequestTimeout, DefaultRequestTimeout)
	c.Heartbeat = max(c.Heartbeat, c.MinInterval)
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = store.RealClock{}
	}
	return nil
}

// Reporter keeps the TabbyNode of one node equal to the agent's status. Create
// it with New, run it with Run.
type Reporter struct {
	cfg     Config
	log     *slog.Logger
	kick    chan struct{}
	started atomic.Bool
	steps   atomic.Uint64 // loop iterations (tests wait on it)

	// Run's goroutine only.
	latest      agent.Status
	obj         *unstructured.Unstructured // the object as last read or written; nil: unknown
	sent        *v1alpha1.TabbyNodeStatus  // the status last written; nil: none yet
	dirty       bool                       // latest differs from sent
	lastAttempt time.Time
	lastWrite   time.Time
	failures    int
	retryDelay  time.Duration
	ownerWarned bool
}

// New checks cfg and returns a Reporter. It does no I/O.
func New(cfg Config) (*Reporter, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Reporter{cfg: cfg, log: cfg.Logger.With("tabbynode", cfg.Node), kick: make(chan struct{}, 1)}, nil
}

// Notify asks for an immediate sample of Source (the write itself still
// respects MinInterval). It never blocks.
func (r *Reporter) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run writes the status until ctx ends, then returns nil. API errors never
// end it: it retries with backoff and resumes when the API is back. Run may
// be called once.
func (r *Reporter) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("nodestatus: Run called twice")
	}
	clk := r.cfg.Clock
	// One timer for both deadlines, so that nothing is lost when both fall
	// due together. The first write is due at once: `kubectl get
	// tabbynodes` shows a starting agent.
	timer := clk.NewTimer(time.Hour)
	defer timer.Stop()
	var pollDue time.Time // zero: sample now
	for {
		now := clk.Now()
		if !now.Before(pollDue) {
			r.sample()
			pollDue = now.Add(r.cfg.Poll)
		}
		if !now.Before(r.due()) {
			r.attempt(ctx)
			now = clk.Now() // a write takes time
		}
		if ctx.Err() != nil {
			return nil
		}
		// Both deadlines are now in the future (or just passed, after a
		// slow write): sample moved pollDue, attempt moved due.
		timer.Reset(max(earliest(pollDue, r.due()).Sub(now), 0))
		r.steps.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		case <-r.kick:
			pollDue = time.Time{}
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// sample reads Source and notes whether it changed what was last written.
func (r *Reporter) sample() {
	r.latest = r.cfg.Source()
	if r.sent == nil {
		r.dirty = true
		return
	}
	next := buildStatus(r.sent.Conditions, r.latest, r.cfg.Datastore, r.cfg.AgentVersion, metav1.NewTime(r.cfg.Clock.Now()))
	r.dirty = !equality.Semantic.DeepEqual(withoutVolatile(next), withoutVolatile(*r.sent))
}

// withoutVolatile clears the fields that change with every kernel sync or
// write (lastSync, its duration, the sync count, the heartbeat): they are
// written along with real changes and at every heartbeat, but do not cause a
// write of their own, so a node whose pods churn does not write its status
// every MinInterval.
func withoutVolatile(s v1alpha1.TabbyNodeStatus) *v1alpha1.TabbyNodeStatus {
	s.LastSync, s.LastSyncDuration, s.Syncs, s.LastHeartbeatTime = nil, "", 0, nil
	return &s
}

// due is when the next write should happen: after a failure, the retry;
// with a change, MinInterval after the last attempt; else the heartbeat.
func (r *Reporter) due() time.Time {
	switch {
	case r.failures > 0:
		return r.lastAttempt.Add(r.retryDelay)
	case r.dirty:
		return r.lastAttempt.Add(r.cfg.MinInterval) // the zero time at first: due at once
	default:
		return r.lastWrite.Add(r.cfg.Heartbeat)
	}
}

// attempt writes the latest status once and schedules the next retry when
// that fails.
func (r *Reporter) attempt(ctx context.Context) {
	r.lastAttempt = r.cfg.Clock.Now()
	err := r.write(ctx)
	if ctx.Err() != nil {
		return // shutting down: not a failure worth a log line
	}
	if err != nil {
		r.failures++
		if r.failures == 1 {
			r.retryDelay = r.cfg.RetryMin
			r.log.Warn("writing the TabbyNode status failed; retrying with backoff, the agent is not affected",
				"error", err.Error(), "retry", r.retryDelay.String())
		} else {
			r.retryDelay = min(2*r.retryDelay, r.cfg.RetryMax)
			r.log.Debug("writing the TabbyNode status failed again", "error", err.Error(),
				"failures", r.failures, "retry", r.retryDelay.String())
		}
		return
	}
	if r.failures > 0 {
		r.log.Info("TabbyNode status written again", "failed_attempts", r.failures)
	}
	r.failures, r.retryDelay = 0, 0
	r.lastWrite = r.lastAttempt
	r.dirty = false
}

// ErrNotServed is wrapped by write errors when the API server does not serve
// tabby.dev/v1alpha1 tabbynodes (the CRD is not installed).
var ErrNotServed = errors.New("the API server does not serve tabbynodes.tabby.dev (is deploy/crds/tabby.dev_tabbynodes.yaml applied?)")

// IsNotServed reports whether err says the TabbyNode CRD is not installed.
func IsNotServed(err error) bool { return errors.Is(err, ErrNotServed) }

func (r *Reporter) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.RequestTimeout)
}

// conditionsOf returns the status conditions of a TabbyNode as read.
func conditionsOf(u *unstructured.Unstructured) ([]metav1.Condition, error) {
	if u == nil {
		return nil, nil
	}
	var tn v1alpha1.TabbyNode
	if err := fromUnstructured(u, &tn); err != nil {
		return nil, fmt.Errorf("nodestatus: reading TabbyNode %s: %w", u.GetName(), err)
	}
	return tn.Status.Conditions, nil
}
