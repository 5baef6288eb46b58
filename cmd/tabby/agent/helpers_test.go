package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

const testNode = "n1"

// fakeApplier records every call. Besides Sync it has the methods a
// destructive applier could have, so tests can prove they are never called.
type fakeApplier struct {
	mu     sync.Mutex
	calls  []string
	tables []*ir.Table
	fail   int // fail this many Syncs from now
	notify chan struct{}
}

func newFakeApplier() *fakeApplier { return &fakeApplier{notify: make(chan struct{}, 100)} }

func (f *fakeApplier) Sync(t *ir.Table) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Sync")
	defer func() {
		select {
		case f.notify <- struct{}{}:
		default:
		}
	}()
	if f.fail > 0 {
		f.fail--
		return fmt.Errorf("injected failure")
	}
	f.tables = append(f.tables, t)
	return nil
}

func (f *fakeApplier) Flush() error  { f.record("Flush"); return nil }
func (f *fakeApplier) Delete() error { f.record("Delete"); return nil }
func (f *fakeApplier) Close() error  { f.record("Close"); return nil }

func (f *fakeApplier) record(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeApplier) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeApplier) syncs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tables)
}

func (f *fakeApplier) last() *ir.Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tables) == 0 {
		return nil
	}
	return f.tables[len(f.tables)-1]
}

// waitSyncs waits until n successful Syncs happened.
func (f *fakeApplier) waitSyncs(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for f.syncs() < n {
		select {
		case <-f.notify:
		case <-deadline:
			t.Fatalf("waited for %d syncs, have %d (calls %v)", n, f.syncs(), f.Calls())
		}
	}
}

// reconcilingApplier is a fakeApplier with a drift check.
type reconcilingApplier struct {
	*fakeApplier
	repaired bool
}

func (r *reconcilingApplier) Reconcile() (bool, error) {
	r.record("Reconcile")
	return r.repaired, nil
}

// fakeStore is a Datastore the test drives through its handler.
type fakeStore struct{ h chan store.Handler }

func newFakeStore() *fakeStore { return &fakeStore{h: make(chan store.Handler, 1)} }

func (s *fakeStore) Run(ctx context.Context, h store.Handler) error {
	s.h <- h
	<-ctx.Done()
	return nil
}

// fakeFinder resolves addresses it was told about, or, with all, every
// address to a name derived from it.
type fakeFinder struct {
	mu    sync.Mutex
	all   bool
	known map[netip.Addr]string
}

func (f *fakeFinder) InterfaceFor(a netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name, ok := f.known[a]; ok {
		return name, nil
	}
	if f.all {
		return derivedIface(a), nil
	}
	return "", fmt.Errorf("%w: %s (fake)", ErrNoInterface, a)
}

func (f *fakeFinder) set(a netip.Addr, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.known == nil {
		f.known = map[netip.Addr]string{}
	}
	f.known[a] = name
}

func derivedIface(a netip.Addr) string {
	h := fnv.New32a()
	h.Write(a.AsSlice())
	return fmt.Sprintf("if%08x", h.Sum32())
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// decode decodes YAML objects, failing the test on any error.
func decode(t testing.TB, file, doc string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode(file, []byte(doc))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return objs
}

// expectedTable is what the agent must converge to for objs: a full compile
// of their normalisation (invalid objects left out, which is what the agent
// does when an object has no other valid version), with local pods'
// interfaces as the finder resolves them (and pods it cannot resolve
// published as remote).
func expectedTable(t testing.TB, objs []policy.Object, f InterfaceFinder) string {
	t.Helper()
	m, _ := policy.Normalize(objs)
	for i := range m.Endpoints {
		ep := &m.Endpoints[i]
		if ep.Node != testNode || f == nil {
			continue
		}
		if name, err := findInterface(f, ep.IPs); err == nil {
			ep.Interface = name
		} else {
			ep.Node = ""
		}
	}
	tab, err := compiler.Compile(m, compiler.Options{Node: testNode})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return tab.String()
}

// syncAgent is an agent driven synchronously: no loop goroutine; the test
// feeds the recorder and calls batch.
func syncAgent(t testing.TB, app Applier, f InterfaceFinder) *Agent {
	t.Helper()
	cfg := Config{Node: testNode, Datastore: newFakeStore(), Applier: app, Logger: quietLogger(),
		Clock: storetest.NewFakeClock(time.Unix(0, 0))}
	if f != nil {
		cfg.Interfaces = f
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func contains(haystack []string, needle string) bool {
	return slices.ContainsFunc(haystack, func(s string) bool { return strings.Contains(s, needle) })
}

func errorsAs[T error](err error, target *T) bool { return errors.As(err, target) }

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
