package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/tabbynet/tabby/policy"
)

// snapshot is what the loop publishes for /status after each batch.
type snapshot struct {
	LastBatch        time.Time
	LastSync         time.Time
	ChangeSeen       time.Time // when the datastore saw the earliest change the last sync applied
	LastSyncDuration time.Duration
	CompileDuration  time.Duration
	Syncs            uint64
	SyncError        string
	LastReconcile    time.Time
	ReconcileError   string
	Repairs          uint64
	Policies         int
	Endpoints        int
	LocalEndpoints   int
	NetworkSets      int
	Pending          []string // local pods without an interface: "ns/name: reason"
	Problems         []string // normalisation and compiler problems
}

// Status is the /status document.
type Status struct {
	Node      string    `json:"node"`
	Ready     bool      `json:"ready"`
	Alive     bool      `json:"alive"`
	LastBatch time.Time `json:"lastBatch,omitzero"`
	LastSync  time.Time `json:"lastSync,omitzero"`
	// LastChangeSeen is when the datastore saw the earliest change that the
	// last successful sync applied (an inotify event, a watch event); zero
	// when that sync applied no datastore change (a retry, an interface
	// that appeared). LastSync minus it is the agent's change-to-enforced
	// latency.
	LastChangeSeen    time.Time `json:"lastChangeSeen,omitzero"`
	LastSyncDuration  string    `json:"lastSyncDuration,omitempty"`
	CompileDuration   string    `json:"compileDuration,omitempty"`
	Syncs             uint64    `json:"syncs"`
	LastSyncError     string    `json:"lastSyncError,omitempty"`
	LastReconcile     time.Time `json:"lastReconcile,omitzero"`
	ReconcileError    string    `json:"reconcileError,omitempty"`
	Repairs           uint64    `json:"repairs"`
	Policies          int       `json:"policies"`
	Endpoints         int       `json:"endpoints"`
	LocalEndpoints    int       `json:"localEndpoints"`
	NetworkSets       int       `json:"networkSets"`
	PendingInterfaces []string  `json:"pendingInterfaces,omitempty"`
	// Errors are the current problems: manifests that do not decode (file,
	// document, field), objects that do not normalise or compile.
	Errors []string `json:"errors,omitempty"`
}

// record updates the snapshot after a batch; seen is when its earliest change
// was seen, synced says Sync was called.
func (a *Agent) record(start, compiled, seen time.Time, syncErr error, synced bool) {
	now := a.cfg.Clock.Now()
	var probs []string
	a.norm.problems(func(ref policy.Ref, errs []error, kept bool) {
		for _, err := range errs {
			if kept {
				probs = append(probs, err.Error()+" (enforcing the last valid version)")
			} else {
				probs = append(probs, err.Error()+" (left out)")
			}
		}
	})
	for _, err := range a.eng.Problems() {
		probs = append(probs, err.Error())
	}
	var pending []string
	for _, ref := range slices.SortedFunc(maps.Keys(a.pub.pending), compareRefs) {
		pending = append(pending, ref.Namespace+"/"+ref.Name+": "+a.pub.pending[ref].Error())
	}
	eps, local := a.pub.counts()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &a.snap
	s.LastBatch, s.CompileDuration = now, compiled.Sub(start)
	if synced {
		s.Syncs++
		s.SyncError = errString(syncErr)
		if syncErr == nil {
			s.LastSync, s.LastSyncDuration, s.ChangeSeen = now, now.Sub(compiled), seen
		}
	}
	s.Policies, s.Endpoints, s.LocalEndpoints = len(a.norm.policies), eps, local
	s.NetworkSets, s.Pending, s.Problems = len(a.norm.netsets), pending, probs
}

// Status returns the current status.
func (a *Agent) Status() Status {
	storeProbs := a.rec.storeProblems()
	a.mu.Lock()
	s := a.snap
	a.mu.Unlock()
	st := Status{
		Node: a.cfg.Node, Ready: a.Ready(), Alive: a.Alive(),
		LastBatch: s.LastBatch, LastSync: s.LastSync, LastChangeSeen: s.ChangeSeen, Syncs: s.Syncs, LastSyncError: s.SyncError,
		LastReconcile: s.LastReconcile, ReconcileError: s.ReconcileError, Repairs: s.Repairs,
		Policies: s.Policies, Endpoints: s.Endpoints, LocalEndpoints: s.LocalEndpoints,
		NetworkSets: s.NetworkSets, PendingInterfaces: s.Pending,
	}
	if !s.LastSync.IsZero() {
		st.LastSyncDuration = s.LastSyncDuration.String()
	}
	if !s.LastBatch.IsZero() {
		st.CompileDuration = s.CompileDuration.String()
	}
	for _, err := range storeProbs {
		st.Errors = append(st.Errors, err.Error())
	}
	st.Errors = append(st.Errors, s.Problems...)
	if s.SyncError != "" {
		st.Errors = append(st.Errors, "sync: "+s.SyncError)
	}
	return st
}

// Handler serves /healthz, /readyz and /status.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		probe(w, a.Alive(), "loop alive", "loop stopped or stuck in one batch")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		probe(w, a.Ready(), "ready", "first sync not done")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	return mux
}

func probe(w http.ResponseWriter, ok bool, yes, no string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, no)
		return
	}
	fmt.Fprintln(w, yes)
}

// ServeHealth serves Handler on ln until ctx ends.
func (a *Agent) ServeHealth(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("agent: health server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent: health server: %w", err)
	}
	return nil
}
