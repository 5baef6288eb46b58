package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/policy"
	"github.com/tabbynet/tabby/policy/store"
	"github.com/tabbynet/tabby/policy/store/storetest"
)

// np renders a Kubernetes NetworkPolicy allowing ingress on port.
func np(name string, port int) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: %s, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: %d}]
`, name, port)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// port reads the port an emitted NetworkPolicy allows.
func port(o policy.Object) int {
	return o.NetworkPolicy.Spec.Ingress[0].Ports[0].Port.IntValue()
}

type harness struct {
	t      *testing.T
	dir    string
	rec    *storetest.Recorder
	clock  *storetest.FakeClock
	cancel context.CancelFunc
	done   chan error
}

// start runs a Dir over a fresh directory prepared by setup, and waits for
// the initial sync.
func start(t *testing.T, opts store.DirOptions, setup func(dir string)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), rec: storetest.NewRecorder(),
		clock: storetest.NewFakeClock(time.Unix(1000, 0)), done: make(chan error, 1)}
	if setup != nil {
		setup(h.dir)
	}
	opts.Clock = h.clock
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	d := store.NewDir(h.dir, opts)
	go func() { h.done <- d.Run(ctx, h.rec) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWait()
	if err := h.rec.WaitFor(wctx, func(cs []storetest.Call) bool { return hasOp(cs, "synced") }); err != nil {
		t.Fatal(err)
	}
	return h
}

func hasOp(cs []storetest.Call, op string) bool {
	return slices.ContainsFunc(cs, func(c storetest.Call) bool { return c.Op == op })
}

func (h *harness) waitFor(what string, cond func([]storetest.Call) bool) []storetest.Call {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.rec.WaitFor(ctx, cond); err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
	return h.rec.Take()
}

// settle checks that nothing more arrives for a while.
func (h *harness) settle() {
	h.t.Helper()
	time.Sleep(100 * time.Millisecond)
	if cs := h.rec.Take(); len(cs) > 0 {
		h.t.Fatalf("unexpected calls: %v", cs)
	}
}

func upserted(cs []storetest.Call) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		if c.Op == "upsert" {
			out[c.Ref.Name] = port(c.Object)
		}
	}
	return out
}

func deleted(cs []storetest.Call) []string {
	var out []string
	for _, c := range cs {
		if c.Op == "delete" {
			out = append(out, c.Ref.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestInitialScanIgnoresNonManifests(t *testing.T) {
	var cs []storetest.Call
	h := start(t, store.DirOptions{}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("a", 80)+"---\n"+np("a2", 81))
		write(t, filepath.Join(dir, "b.yml"), np("b", 82))
		write(t, filepath.Join(dir, "c.json"), `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
			"metadata":{"name":"c","namespace":"shop"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":83}]}]}}`)
		for _, ignored := range []string{".hidden.yaml", "#a.yaml#", "a.yaml~", "notes.txt", ".a.yaml.swp"} {
			write(t, filepath.Join(dir, ignored), np("ignored", 1))
		}
		if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	cs = h.rec.Take()
	got := upserted(cs)
	want := map[string]int{"a": 80, "a2": 81, "b": 82, "c": 83}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("initial upserts %v, want %v", got, want)
	}
	if last := cs[len(cs)-1]; last.Op != "synced" {
		t.Fatalf("synced must come after the initial list, calls: %v", cs)
	}
	for _, c := range cs {
		if c.Op == "upsert" && c.Object.Ref.Name == "a2" && c.Object.Source.Doc != 2 {
			t.Errorf("a2 source %v, want document 2", c.Object.Source)
		}
	}
}

func TestModifyEmitsOnlyTheDifference(t *testing.T) {
	h := start(t, store.DirOptions{}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("a", 80)+"---\n"+np("b", 81)+"---\n"+np("c", 82))
	})
	h.rec.Take()
	// b changes, c goes, a stays the same (moved to another document).
	write(t, filepath.Join(h.dir, "a.yaml"), np("b", 91)+"---\n"+np("a", 80))
	cs := h.waitFor("b upserted and c deleted", func(cs []storetest.Call) bool {
		return upserted(cs)["b"] == 91 && len(deleted(cs)) == 1
	})
	if d := deleted(cs); !slices.Equal(d, []string{"c"}) {
		t.Fatalf("deleted %v, want [c]", d)
	}
	// a's definition did not change; only its document number moved.
	for _, c := range cs {
		if c.Op == "upsert" && c.Ref.Name == "a" && c.Object.Source.Doc != 2 {
			t.Fatalf("a re-emitted with a stale source: %v", c.Object.Source)
		}
	}
	h.settle()
}

func TestRenameAndDelete(t *testing.T) {
	h := start(t, store.DirOptions{}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("a", 80))
	})
	h.rec.Take()
	// An atomic replace through a dotfile (how editors and kubectl-like tools
	// write): the temp file is ignored, the rename is one update.
	tmp := filepath.Join(h.dir, ".a.yaml.tmp")
	write(t, tmp, np("a", 90))
	if err := os.Rename(tmp, filepath.Join(h.dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	cs := h.waitFor("a updated", func(cs []storetest.Call) bool { return upserted(cs)["a"] == 90 })
	if len(deleted(cs)) > 0 {
		t.Fatalf("atomic replace deleted %v", deleted(cs))
	}
	// Renaming within the directory: the objects now come from the new file.
	if err := os.Rename(filepath.Join(h.dir, "a.yaml"), filepath.Join(h.dir, "z.yaml")); err != nil {
		t.Fatal(err)
	}
	cs = h.waitFor("a from z.yaml", func(cs []storetest.Call) bool {
		return slices.ContainsFunc(cs, func(c storetest.Call) bool {
			return c.Op == "upsert" && filepath.Base(c.Object.Source.File) == "z.yaml"
		})
	})
	_ = cs
	// Renaming out of the directory deletes.
	if err := os.Rename(filepath.Join(h.dir, "z.yaml"), filepath.Join(t.TempDir(), "z.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("a deleted", func(cs []storetest.Call) bool { return slices.Equal(deleted(cs), []string{"a"}) })
	// Renaming into the directory creates.
	outside := filepath.Join(t.TempDir(), "n.yaml")
	write(t, outside, np("new", 70))
	if err := os.Rename(outside, filepath.Join(h.dir, "n.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("n upserted", func(cs []storetest.Call) bool { return upserted(cs)["new"] == 70 })
	if err := os.Remove(filepath.Join(h.dir, "n.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("new deleted", func(cs []storetest.Call) bool { return slices.Equal(deleted(cs), []string{"new"}) })
	h.settle()
}

func TestBadFileKeepsPreviousObjects(t *testing.T) {
	h := start(t, store.DirOptions{}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("a", 80)+"---\n"+np("b", 81))
	})
	h.rec.Take()
	path := filepath.Join(h.dir, "a.yaml")
	// Document 1 gets a typo; document 2 changes validly; a new object c.
	typo := strings.Replace(np("a", 85), "ingress:", "ingres:", 1)
	write(t, path, typo+"---\n"+np("b", 91)+"---\n"+np("c", 92))
	cs := h.waitFor("problems reported", func(cs []storetest.Call) bool { return hasOp(cs, "problems") && upserted(cs)["c"] == 92 })
	if d := deleted(cs); len(d) > 0 {
		t.Fatalf("a typo deleted %v", d)
	}
	if got := upserted(cs); got["b"] != 91 || got["c"] != 92 || got["a"] != 0 {
		t.Fatalf("upserts %v: want the valid documents only", got)
	}
	var probs []error
	for _, c := range cs {
		if c.Op == "problems" {
			if c.Source != path {
				t.Fatalf("problems source %q, want %q", c.Source, path)
			}
			probs = c.Problems
		}
	}
	var fe *policy.FieldError
	if len(probs) != 1 || !errors.As(probs[0], &fe) {
		t.Fatalf("problems %v: want one *policy.FieldError", probs)
	}
	if fe.Source.File != path || fe.Source.Doc != 1 || fe.Field != "spec.ingres" {
		t.Fatalf("problem %+v: want %s document 1 field spec.ingres", fe, path)
	}
	// Rewriting the same broken content (or a rescan) reports nothing new.
	h.clock.Advance(store.DefaultRescanInterval)
	h.settle()

	// Fixed: a gets its new version, b stays, c is gone now (the fixed file
	// no longer has it), problems cleared.
	write(t, path, np("a", 86)+"---\n"+np("b", 91))
	cs = h.waitFor("fixed", func(cs []storetest.Call) bool { return upserted(cs)["a"] == 86 && len(deleted(cs)) == 1 })
	if d := deleted(cs); !slices.Equal(d, []string{"c"}) {
		t.Fatalf("deleted %v, want [c]", d)
	}
	if !slices.ContainsFunc(cs, func(c storetest.Call) bool { return c.Op == "problems" && len(c.Problems) == 0 }) {
		t.Fatalf("problems not cleared: %v", cs)
	}
	// Broken beyond YAML: still nothing lost.
	write(t, path, "apiVersion: [\n")
	cs = h.waitFor("yaml problem", func(cs []storetest.Call) bool { return hasOp(cs, "problems") })
	if d := deleted(cs); len(d) > 0 {
		t.Fatalf("invalid YAML deleted %v", d)
	}
	h.settle()
}

func TestSameRefInTwoFilesLastWriterWins(t *testing.T) {
	h := start(t, store.DirOptions{}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("p", 1))
		write(t, filepath.Join(dir, "b.yaml"), np("p", 2))
	})
	cs := h.rec.Take()
	// In the initial scan files count as written in name order.
	if got := upserted(cs)["p"]; got != 2 {
		t.Fatalf("initial winner port %d, want 2 (b.yaml, later by name)", got)
	}
	write(t, filepath.Join(h.dir, "a.yaml"), np("p", 3))
	h.waitFor("a.yaml now wins", func(cs []storetest.Call) bool { return upserted(cs)["p"] == 3 })
	// A change elsewhere in b.yaml does not make it the writer of p.
	write(t, filepath.Join(h.dir, "b.yaml"), np("p", 2)+"---\n"+np("q", 5))
	cs = h.waitFor("q", func(cs []storetest.Call) bool { return upserted(cs)["q"] == 5 })
	if _, ok := upserted(cs)["p"]; ok {
		t.Fatalf("p re-emitted from b.yaml though its definition there did not change: %v", cs)
	}
	// The winner goes away: the other definition is emitted, not a delete.
	if err := os.Remove(filepath.Join(h.dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	cs = h.waitFor("b.yaml's p back", func(cs []storetest.Call) bool { return upserted(cs)["p"] == 2 })
	if d := deleted(cs); len(d) > 0 {
		t.Fatalf("deleted %v though b.yaml still defines p", d)
	}
	h.settle()
}

func TestRescanWithoutInotify(t *testing.T) {
	h := start(t, store.DirOptions{NoInotify: true, RescanInterval: time.Minute}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("a", 80))
	})
	h.rec.Take()
	write(t, filepath.Join(h.dir, "a.yaml"), np("a", 81))
	write(t, filepath.Join(h.dir, "b.yaml"), np("b", 82))
	h.settle() // nothing without the timer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitArmed(ctx, h.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	cs := h.waitFor("rescan", func(cs []storetest.Call) bool { return len(upserted(cs)) == 2 })
	if got := upserted(cs); got["a"] != 81 || got["b"] != 82 {
		t.Fatalf("rescan upserts %v", got)
	}
}

func TestDirectoryDisappearsAndComesBack(t *testing.T) {
	h := start(t, store.DirOptions{RescanInterval: time.Minute}, func(dir string) {
		write(t, filepath.Join(dir, "a.yaml"), np("a", 80))
	})
	h.rec.Take()
	// Move the whole directory away: nothing may be deleted.
	away := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(h.dir, away); err != nil {
		t.Fatal(err)
	}
	cs := h.waitFor("directory problem", func(cs []storetest.Call) bool {
		return slices.ContainsFunc(cs, func(c storetest.Call) bool { return c.Op == "problems" && c.Source == "" && len(c.Problems) > 0 })
	})
	if d := deleted(cs); len(d) > 0 {
		t.Fatalf("a vanished directory deleted %v", d)
	}
	// A new directory at the same path, with different content.
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(h.dir, "b.yaml"), np("b", 81))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitArmed(ctx, h.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	cs = h.waitFor("rescan of the new directory", func(cs []storetest.Call) bool { return len(deleted(cs)) == 1 })
	if got := upserted(cs); got["b"] != 81 {
		t.Fatalf("upserts %v, want b", got)
	}
	// And it is watched again.
	write(t, filepath.Join(h.dir, "c.yaml"), np("c", 82))
	h.waitFor("c through inotify", func(cs []storetest.Call) bool { return upserted(cs)["c"] == 82 })
}

// TestConfigMapVolume mimics how the kubelet updates a ConfigMap volume:
// files are symlinks through "..data", which is swapped atomically.
func TestConfigMapVolume(t *testing.T) {
	h := start(t, store.DirOptions{}, func(dir string) {
		v1 := filepath.Join(dir, "..v1")
		if err := os.Mkdir(v1, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(v1, "p.yaml"), np("p", 80))
		must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
		must(t, os.Symlink("..data/p.yaml", filepath.Join(dir, "p.yaml")))
	})
	if got := upserted(h.rec.Take())["p"]; got != 80 {
		t.Fatalf("initial p port %d", got)
	}
	v2 := filepath.Join(h.dir, "..v2")
	must(t, os.Mkdir(v2, 0o755))
	write(t, filepath.Join(v2, "p.yaml"), np("p", 81))
	must(t, os.Symlink("..v2", filepath.Join(h.dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(h.dir, "..data_tmp"), filepath.Join(h.dir, "..data")))
	h.waitFor("p through the swapped symlink", func(cs []storetest.Call) bool { return upserted(cs)["p"] == 81 })
	// A new symlinked file appears without any write event of its own.
	write(t, filepath.Join(v2, "q.yaml"), np("q", 82))
	must(t, os.Symlink("..data/q.yaml", filepath.Join(h.dir, "q.yaml")))
	h.waitFor("q through its symlink", func(cs []storetest.Call) bool { return upserted(cs)["q"] == 82 })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestStartFailsOnMissingDirectory(t *testing.T) {
	d := store.NewDir(filepath.Join(t.TempDir(), "nope"), store.DirOptions{})
	err := d.Run(context.Background(), storetest.NewRecorder())
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Run on a missing directory: %v, want an error wrapping ErrNotExist", err)
	}
}

func TestRelevant(t *testing.T) {
	for name, want := range map[string]bool{
		"a.yaml": true, "a.yml": true, "a.json": true, "a.YAML": false, "a.yaml~": false, ".a.yaml": false,
		"#a.yaml#": false, "a.txt": false, "4913": false, "..data": false, "": false,
	} {
		if got := store.Relevant(name); got != want {
			t.Errorf("Relevant(%q) = %v, want %v", name, got, want)
		}
	}
}

// observingHandler is a Recorder that also implements store.Observer,
// recording Observed as a Problems call with a marker source, so that it
// appears in the same sequence as the changes.
type observingHandler struct{ *storetest.Recorder }

func (o observingHandler) Observed(time.Time) { o.Problems("observed-marker", nil) }

// TestObservedPrecedesTheChanges checks that the directory datastore tells
// an Observer handler that it noticed something before delivering the
// changes an inotify event leads to: the agent measures change-to-enforced
// latency from it.
func TestObservedPrecedesTheChanges(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), np("a", 80))
	rec := storetest.NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := store.NewDir(dir, store.DirOptions{Logger: slog.New(slog.DiscardHandler),
		Clock: storetest.NewFakeClock(time.Unix(1000, 0))})
	go func() { done <- d.Run(ctx, observingHandler{rec}) }()
	defer func() { cancel(); <-done }()
	wctx, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWait()
	must(t, rec.WaitFor(wctx, func(cs []storetest.Call) bool { return hasOp(cs, "synced") }))
	rec.Take()
	write(t, filepath.Join(dir, "a.yaml"), np("a", 81))
	must(t, rec.WaitFor(wctx, func(cs []storetest.Call) bool {
		return upserted(cs)["a"] == 81
	}))
	var ops []string
	for _, c := range rec.Take() {
		ops = append(ops, c.Op+c.Source)
	}
	if want := []string{"problemsobserved-marker", "upsert"}; !slices.Equal(ops, want) {
		t.Fatalf("calls %v, want %v", ops, want)
	}
}
