package enforcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tabbynet/tabby/compiler/ir"
)

// DefaultTable is the table Tabby owns unless Options.Table says otherwise.
const DefaultTable = "tabby"

// Options configure an Enforcer.
type Options struct {
	// NetNSPath is a network namespace file (/run/netns/<name>,
	// /proc/<pid>/ns/net). NetNSFd (> 0) is an already open one, borrowed
	// (not closed by Close). With neither, the namespace of the calling
	// thread.
	NetNSPath string
	NetNSFd   int
	// Table is the name of the inet table the enforcer owns (DefaultTable
	// if empty). It never touches any other table.
	Table string
	// Logger receives sync and drift events (discarded if nil).
	Logger *slog.Logger
	// Clock times syncs (time.Now if nil).
	Clock func() time.Time
}

// Stats are cumulative counters and the last sync's figures.
type Stats struct {
	Syncs        uint64 // Sync calls with a usable table
	Transactions uint64 // transactions sent (at most one per Sync)
	FullSyncs    uint64 // of which full replaces
	Failures     uint64 // transactions that failed
	DriftRepairs uint64 // full replaces made by Reconcile
	Generation   uint32 // the namespace's ruleset generation last seen holding our table intact

	LastSync     time.Time
	LastDuration time.Duration // the whole Sync
	LastKernel   time.Duration // of which sending and the kernel's commit
	LastFull     bool
	LastMessages int // netlink messages in the last transaction
	LastBytes    int
}

// Enforcer writes tables into one namespace's nftables. Its methods are safe
// for concurrent use; they are serialised.
type Enforcer struct {
	mu     sync.Mutex
	table  string
	log    *slog.Logger
	now    func() time.Time
	nsFile *os.File
	nsFd   int
	c      *conn // nil after a transport failure: redialled on next use
	closed bool

	rec    *record   // what the kernel holds, as last written; nil if unknown
	want   *ir.Table // the last table passed to Sync (valid)
	resync bool      // the next write must be a full replace
	stats  Stats

	// onCommit, if set (tests), sees every batch before it is sent.
	onCommit func(*batch)
}

// New opens a netlink socket in the target namespace. It reads and writes
// nothing yet: the first Sync replaces whatever table of that name exists.
func New(opts Options) (*Enforcer, error) {
	e := &Enforcer{table: opts.Table, log: opts.Logger, now: opts.Clock, resync: true}
	if e.table == "" {
		e.table = DefaultTable
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	fd := opts.NetNSFd
	if opts.NetNSPath != "" {
		f, err := os.Open(opts.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("enforcer: open network namespace: %w", err)
		}
		e.nsFile, fd = f, int(f.Fd())
	}
	e.nsFd = fd
	if _, err := e.conn(); err != nil {
		if e.nsFile != nil {
			_ = e.nsFile.Close()
		}
		return nil, fmt.Errorf("enforcer: %w", err)
	}
	return e, nil
}

// conn returns the socket, dialling it if needed. The caller holds mu.
func (e *Enforcer) conn() (*conn, error) {
	if e.c == nil {
		c, err := dial(e.nsFd)
		if err != nil {
			return nil, err
		}
		e.c = c
	}
	return e.c, nil
}

// check drops the socket after a transport failure: replies of an
// interrupted exchange may still be queued on it.
func (e *Enforcer) check(err error) error {
	if err != nil && errors.Is(err, ErrTransport) && e.c != nil {
		_ = e.c.close()
		e.c = nil
	}
	return err
}

// Close releases the socket. The table stays in the kernel, enforced.
func (e *Enforcer) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	var err error
	if e.c != nil {
		err = e.c.close()
	}
	if e.nsFile != nil {
		err = errors.Join(err, e.nsFile.Close())
	}
	return err
}

// Sync makes the kernel's table equal to desired in one transaction: the
// difference from what this Enforcer last wrote, or a full replace on the
// first Sync, after a failure, and for changes the kernel cannot apply in
// place. A Sync with nothing to change sends nothing. The table's objects
// must not be modified after the call (a changed object is a new object).
func (e *Enforcer) Sync(desired *ir.Table) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if desired == nil {
		return fmt.Errorf("enforcer: %w: nil table", ErrInvalidTable)
	}
	if desired.Name != e.table {
		return fmt.Errorf("enforcer: %w: table %q, this enforcer owns %q", ErrInvalidTable, desired.Name, e.table)
	}
	full := e.resync || e.rec == nil
	if full {
		// A delta validates what it writes (and what it removes) itself.
		if err := validate(desired); err != nil {
			return fmt.Errorf("enforcer: %w", err)
		}
	}
	e.stats.Syncs++
	return e.write(desired, full)
}

// write diffs and commits; the caller holds mu and validated t.
func (e *Enforcer) write(t *ir.Table, full bool) error {
	start := e.now()
	d, next, err := diff(e.rec, t, full)
	if err != nil {
		return fmt.Errorf("enforcer: %w", err)
	}
	if d.empty() {
		// Same content: keep the new objects so later diffs skip them.
		e.want, e.rec = t, next
		return nil
	}
	b := newBatch(e.table)
	if err := program(b, d, t); err != nil {
		return fmt.Errorf("enforcer: %w", err)
	}
	e.want = t
	if e.onCommit != nil {
		e.onCommit(b)
	}
	e.stats.Transactions++
	sent := e.now()
	c, err := e.conn()
	var gen uint32
	if err == nil {
		gen, err = c.commit(b)
		e.check(err)
	}
	end := e.now()
	dur := end.Sub(start)
	e.stats.LastSync, e.stats.LastDuration, e.stats.LastKernel, e.stats.LastFull = start, dur, end.Sub(sent), d.full
	e.stats.LastMessages, e.stats.LastBytes = len(b.msgs), b.bytes
	if err != nil {
		// The kernel applied nothing, or (transport failure) we cannot
		// know: either way only a full replace is safe now.
		e.rec, e.resync = nil, true
		e.stats.Failures++
		e.log.Warn("nftables transaction failed; next sync is a full replace",
			"table", e.table, "full", d.full, "messages", len(b.msgs), "err", err)
		return &SyncError{Full: d.full, Err: err}
	}
	if d.full {
		e.stats.FullSyncs++
	}
	e.rec, e.resync, e.stats.Generation = next, false, gen
	level := slog.LevelDebug
	if d.full {
		level = slog.LevelInfo // rare: first sync, recovery, structural change
	}
	e.log.Log(context.Background(), level, "nftables table synced", "table", e.table, "full", d.full,
		"rules", d.rules, "elements", d.elems, "chains_removed", len(d.gone), "messages", len(b.msgs),
		"bytes", b.bytes, "duration", dur, "generation", gen)
	return nil
}

// NeedsResync reports whether the next Sync will be a full replace.
func (e *Enforcer) NeedsResync() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resync || e.rec == nil
}

// Stats returns the counters.
func (e *Enforcer) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// CheckDrift reads the table back from the kernel (chains, rules, sets and
// their elements, maps) and reports whether it differs from what was last
// written. Before the first successful write it reports drift exactly when
// a write is pending.
func (e *Enforcer) CheckDrift() (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false, ErrClosed
	}
	drift, _, err := e.checkDrift()
	return drift, err
}

func (e *Enforcer) checkDrift() (bool, string, error) {
	if e.rec == nil {
		return e.want != nil, "nothing written", nil
	}
	want, err := canonRecord(e.rec)
	if err != nil {
		return false, "", fmt.Errorf("enforcer: %w", err)
	}
	c, err := e.conn()
	if err != nil {
		return false, "", fmt.Errorf("enforcer: %w", err)
	}
	got, err := readCanon(c, e.table)
	if e.check(err) != nil {
		return false, "", fmt.Errorf("enforcer: read back: %w", err)
	}
	if d := firstDiff(want, got); d != "" {
		return true, d, nil
	}
	return false, "", nil
}

// Reconcile repairs the kernel's table: after a failed write it retries the
// last table with a full replace; otherwise, if the ruleset generation moved
// since our last commit (someone wrote to nftables in this namespace), it
// reads the table back and replaces it when it drifted. It reports whether
// it wrote.
func (e *Enforcer) Reconcile() (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false, ErrClosed
	}
	if e.want == nil {
		return false, nil // nothing to enforce yet
	}
	if e.rec != nil {
		c, err := e.conn()
		if err != nil {
			return false, fmt.Errorf("enforcer: %w", err)
		}
		gen, err := c.generation(nil, nil)
		if e.check(err) != nil {
			return false, fmt.Errorf("enforcer: %w", err)
		}
		if gen == e.stats.Generation {
			return false, nil
		}
		drift, what, err := e.checkDrift()
		if err != nil {
			return false, err
		}
		if !drift {
			e.stats.Generation = gen // others' writes; ours is intact
			return false, nil
		}
		e.log.Warn("nftables table drifted; replacing it", "table", e.table, "difference", what)
	}
	if err := validate(e.want); err != nil {
		return false, fmt.Errorf("enforcer: %w", err)
	}
	e.stats.DriftRepairs++
	if err := e.write(e.want, true); err != nil {
		return false, err
	}
	return true, nil
}
