package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/policy/store"
)

// fileAgent runs an agent over a real manifest directory with the real clock.
func fileAgent(t *testing.T, dir string, debounce, maxDelay time.Duration) (*Agent, *fakeApplier) {
	t.Helper()
	app := newFakeApplier()
	a, err := New(Config{Node: testNode, Applier: app, Logger: quietLogger(), Interfaces: &fakeFinder{all: true},
		Datastore: store.NewDir(dir, store.DirOptions{Logger: quietLogger()}), Debounce: debounce, MaxDelay: maxDelay})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a, app
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBadManifestKeepsPreviousObjects(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pods.yaml", basePods)
	write("allow.yaml", netpol("allow", "web", 80))
	a, app := fileAgent(t, dir, 0, 0)
	waitUntil(t, "ready", a.Ready)
	if !tableHas(app, knpChain("allow")) {
		t.Fatal("allow not enforced")
	}
	syncs := app.syncs()

	// A typo: reported with file and field; allow stays enforced.
	write("allow.yaml", strings.Replace(netpol("allow", "web", 81), "ingress:", "ingres:", 1))
	path := filepath.Join(dir, "allow.yaml")
	waitUntil(t, "the problem in status", func() bool {
		errs := a.Status().Errors
		return contains(errs, path+" (document 1)") && contains(errs, "spec.ingres")
	})
	if !tableHas(app, knpChain("allow")) {
		t.Fatal("a typo removed the policy")
	}
	if app.syncs() != syncs {
		t.Fatalf("a file that does not decode changed the table (%d syncs, had %d)", app.syncs(), syncs)
	}

	// Fixed, now allowing 81: the table follows, the problem goes.
	write("allow.yaml", netpol("allow", "web", 81))
	waitUntil(t, "the fix", func() bool { return app.syncs() > syncs && len(a.Status().Errors) == 0 })
	if !strings.Contains(app.last().String(), "tcp dport 81") {
		t.Fatalf("fixed policy not enforced:\n%s", app.last())
	}
	// Deleting the file deletes its objects.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "deletion", func() bool { return !tableHas(app, knpChain("allow")) })
}

func TestFileBurstIsOneSync(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pods.yaml"), []byte(basePods), 0o644); err != nil {
		t.Fatal(err)
	}
	// A window wide enough that a loaded machine still writes every file
	// within it.
	a, app := fileAgent(t, dir, 300*time.Millisecond, 10*time.Second)
	waitUntil(t, "ready", a.Ready)
	app.waitSyncs(t, 1)
	const n = 10
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(netpol(name, "web", 7000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	app.waitSyncs(t, 2)
	time.Sleep(600 * time.Millisecond) // a second batch would have run by now
	if got := app.syncs(); got != 2 {
		t.Fatalf("%d syncs, want 2: the initial one and one for the burst", got)
	}
	for i := range n {
		if !tableHas(app, knpChain(fmt.Sprintf("p%d", i))) {
			t.Fatalf("p%d missing from the burst's sync", i)
		}
	}
}
