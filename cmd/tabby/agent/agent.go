package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store"
)

// Applier programs a table into the kernel: the enforcer. Sync takes the
// whole desired table (shared, immutable: never modify it) and makes the
// kernel match it; it is called from one goroutine, at most once per batch.
type Applier interface {
	Sync(t *ir.Table) error
}

// Reconciler is optionally implemented by an Applier that can check the
// kernel against what it last synced and repair drift (someone ran nft by
// hand). repaired reports that it had to.
type Reconciler interface {
	Reconcile() (repaired bool, err error)
}

// Defaults of Config.
const (
	DefaultDebounce          = 2 * time.Millisecond
	DefaultMaxDelay          = 100 * time.Millisecond
	DefaultReconcileInterval = 10 * time.Second
	DefaultInterfaceRecheck  = 2 * time.Second
	DefaultRetryMin          = 500 * time.Millisecond
	DefaultRetryMax          = 30 * time.Second
	DefaultStallTimeout      = 2 * time.Minute
)

// Config configures an Agent. Node, Datastore and Applier are required; zero
// durations take the defaults above.
type Config struct {
	Node      string          // this node: pods with spec.nodeName == Node are local
	Datastore store.Datastore // where objects come from
	Applier   Applier         // where tables go
	// Interfaces finds local pods' host-side interfaces (policy-only mode).
	// nil: local pods use compiler.InterfaceName, the name Tabby's CNI gives.
	Interfaces InterfaceFinder
	Clock      store.Clock  // default store.RealClock
	Logger     *slog.Logger // default slog.Default()
	TableName  string       // default compiler.DefaultTableName

	// A batch runs Debounce after the last change, and at most MaxDelay
	// after the first change of the batch.
	Debounce, MaxDelay time.Duration
	// ReconcileInterval is the period of the Applier's drift check (when it
	// is a Reconciler) and of a full re-resolution of local interfaces.
	ReconcileInterval time.Duration
	// InterfaceRecheck is how often local pods without an interface are
	// looked up again.
	InterfaceRecheck time.Duration
	// A failed Sync is retried after RetryMin, doubling up to RetryMax.
	RetryMin, RetryMax time.Duration
	// StallTimeout: /healthz fails while one batch has run longer than this.
	StallTimeout time.Duration
}

func (c *Config) defaults() error {
	if c.Node == "" {
		return errors.New("agent: Config.Node is required")
	}
	if c.Datastore == nil || c.Applier == nil {
		return errors.New("agent: Config.Datastore and Config.Applier are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Debounce, DefaultDebounce)
	def(&c.MaxDelay, DefaultMaxDelay)
	def(&c.ReconcileInterval, DefaultReconcileInterval)
	def(&c.InterfaceRecheck, DefaultInterfaceRecheck)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.StallTimeout, DefaultStallTimeout)
	if c.MaxDelay < c.Debounce {
		c.MaxDelay = c.Debounce
	}
	if c.Clock == nil {
		c.Clock = store.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Agent is the node agent. Create it with New, run it with Run.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	rec  *recorder
	norm *normalizer
	eng  *compiler.Engine
	pub  *publisher

	started atomic.Bool
	running atomic.Bool  // the loop goroutine runs
	busy    atomic.Int64 // UnixNano when the current batch started; 0 idle
	ready   atomic.Bool
	seen    atomic.Uint64 // recorder.gen as of the last kick the loop handled (tests wait on it)

	// Loop state: only the loop goroutine touches these.
	deb    debouncer
	synced bool // at least one Sync succeeded
	lastOK bool // the last Sync succeeded
	// unsyncedSeen is when the earliest change a failed Sync did not apply
	// was seen (zero after a success).
	unsyncedSeen time.Time
	retryDelay   time.Duration
	retry        store.Timer
	logged       map[string]bool // problems already logged

	mu   sync.Mutex // guards snap
	snap snapshot
}

// New checks cfg and returns an agent.
func New(cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("node", cfg.Node)
	a := &Agent{cfg: cfg, log: log, rec: newRecorder(log, cfg.Clock), norm: newNormalizer(),
		eng:    compiler.NewEngine(compiler.Options{Node: cfg.Node, TableName: cfg.TableName}),
		logged: map[string]bool{}}
	a.deb = debouncer{window: cfg.Debounce, max: cfg.MaxDelay}
	a.pub = newPublisher(a.eng, a.norm, cfg.Node, cfg.Interfaces)
	a.retry = cfg.Clock.NewTimer(time.Hour)
	a.retry.Stop()
	return a, nil
}

// Run runs the datastore, the interface watch and the loop until ctx ends,
// then returns nil, leaving the kernel state as it is. It returns an error
// when the datastore cannot start. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if w, ok := a.cfg.Interfaces.(InterfaceWatcher); ok {
		wg.Go(func() {
			if err := w.WatchInterfaces(ctx, a.rec.interfacesChanged); err != nil && ctx.Err() == nil {
				a.log.Warn("watching routes and links failed; interfaces are rechecked on a timer", "error", err)
			}
		})
	}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		a.loop(ctx)
	}()
	storeErr := make(chan error, 1)
	go func() { storeErr <- a.cfg.Datastore.Run(ctx, a.rec) }()

	var err error
	select {
	case err = <-storeErr:
		if err != nil {
			err = fmt.Errorf("agent: datastore: %w", err)
		} else {
			<-ctx.Done() // a datastore that stops early leaves enforcement as it is
		}
	case <-ctx.Done():
		<-storeErr
	}
	cancel()
	<-loopDone
	wg.Wait()
	a.log.Info("agent stopped; kernel state left in place")
	return err
}

// Ready reports whether the first Sync after the datastore's initial list
// succeeded.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Alive reports whether the loop runs and is not stuck in one batch for more
// than StallTimeout.
func (a *Agent) Alive() bool {
	if !a.running.Load() {
		return false
	}
	since := a.busy.Load()
	return since == 0 || a.cfg.Clock.Now().Sub(time.Unix(0, since)) < a.cfg.StallTimeout
}

// recorder is the datastore's Handler: it only records what changed and
// wakes the loop.
type recorder struct {
	log *slog.Logger
	clk store.Clock
	// kick wakes the loop; buffered, so several wakes coalesce into one.
	kick chan struct{}
	gen  atomic.Uint64 // counts recorded events, bumped before each wake

	mu         sync.Mutex
	pending    map[policy.Ref]*policy.Object // nil: deleted
	synced     bool
	recheckAll bool
	problems   map[string][]error // datastore problems by source
	// observed is when the datastore last said it noticed something
	// (store.Observer); first is when the earliest change now pending was
	// seen: observed if the datastore reported it, else the Upsert/Delete.
	observed, first time.Time
}

func newRecorder(log *slog.Logger, clk store.Clock) *recorder {
	return &recorder{log: log, clk: clk, kick: make(chan struct{}, 1),
		pending: map[policy.Ref]*policy.Object{}, problems: map[string][]error{}}
}

func (r *recorder) wake() {
	r.gen.Add(1)
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Observed implements store.Observer.
func (r *recorder) Observed(t time.Time) {
	r.mu.Lock()
	r.observed = t
	r.mu.Unlock()
}

// Upsert implements store.Handler.
func (r *recorder) Upsert(o policy.Object) {
	r.mu.Lock()
	r.pending[o.Ref] = &o
	r.stampLocked()
	r.mu.Unlock()
	r.wake()
}

// Delete implements store.Handler.
func (r *recorder) Delete(ref policy.Ref) {
	r.mu.Lock()
	r.pending[ref] = nil
	r.stampLocked()
	r.mu.Unlock()
	r.wake()
}

// stampLocked records when the first pending change was seen.
func (r *recorder) stampLocked() {
	if r.first.IsZero() {
		r.first = r.observed
		if r.first.IsZero() {
			r.first = r.clk.Now()
		}
	}
}

// Synced implements store.Handler.
func (r *recorder) Synced() {
	r.mu.Lock()
	r.synced = true
	r.mu.Unlock()
	r.log.Info("datastore synced")
	r.wake()
}

// Problems implements store.Handler: it logs each problem with its file,
// document, object and field, and keeps them for /status.
func (r *recorder) Problems(source string, errs []error) {
	r.mu.Lock()
	if len(errs) == 0 {
		delete(r.problems, source)
	} else {
		r.problems[source] = errs
	}
	r.mu.Unlock()
	if len(errs) == 0 {
		r.log.Info("datastore problems resolved", "source", source)
	}
	for _, err := range errs {
		r.log.Warn("datastore problem; the objects last read from this source stay", problemAttrs(err)...)
	}
}

func (r *recorder) interfacesChanged() {
	r.mu.Lock()
	r.recheckAll = true
	r.mu.Unlock()
	r.wake()
}

// take hands the loop everything recorded so far and when the earliest of it
// was seen (zero when there are no changes); ok is false before the
// datastore's initial list is complete (then nothing is taken).
func (r *recorder) take() (changes map[policy.Ref]*policy.Object, seen time.Time, recheckAll, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.synced {
		return nil, time.Time{}, false, false
	}
	changes, seen, recheckAll = r.pending, r.first, r.recheckAll
	r.pending, r.first, r.recheckAll = map[policy.Ref]*policy.Object{}, time.Time{}, false
	return changes, seen, recheckAll, true
}

func (r *recorder) storeProblems() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []error
	for _, src := range sortedKeys(r.problems) {
		out = append(out, r.problems[src]...)
	}
	return out
}

// problemAttrs are the log attributes of a problem: file, document, object
// and field when it is a *policy.FieldError.
func problemAttrs(err error) []any {
	var fe *policy.FieldError
	if !errors.As(err, &fe) {
		return []any{"error", err.Error()}
	}
	attrs := []any{"source", fe.Source.File}
	if fe.Source.Doc > 0 {
		attrs = append(attrs, "document", fe.Source.Doc) // a manifest file
	}
	if fe.Object.Name != "" {
		attrs = append(attrs, "object", fe.Object.String())
	}
	if fe.Field != "" {
		attrs = append(attrs, "field", fe.Field)
	}
	return append(attrs, "error", err.Error())
}
