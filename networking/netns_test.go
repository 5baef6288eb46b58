//go:build linux

package networking

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

func threadNetns(t *testing.T) string {
	t.Helper()
	l, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNetnsLifecycle(t *testing.T) {
	requireRoot(t)
	ns, err := NewNetns("")
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = ns.Delete()
		}
	})
	if filepath.Dir(ns.Path()) != "/run/netns" {
		t.Errorf("path %s not under /run/netns", ns.Path())
	}
	if _, err := NewNetns(ns.Name()); !errors.Is(err, ErrNetnsExists) {
		t.Errorf("second NewNetns(%s): %v, want ErrNetnsExists", ns.Name(), err)
	}

	// Do runs inside the namespace and leaves the caller's thread alone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine := threadNetns(t)
	var inside string
	if err := ns.Do(func() error {
		l, err := os.Readlink("/proc/thread-self/ns/net")
		inside = l
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == mine || inside == "" {
		t.Errorf("Do ran in %q, the caller's namespace is %q", inside, mine)
	}
	if got := threadNetns(t); got != mine {
		t.Errorf("caller moved from %s to %s", mine, got)
	}
	opened, err := OpenNetns(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	var viaOpen string
	_ = opened.Do(func() error { viaOpen, _ = os.Readlink("/proc/thread-self/ns/net"); return nil })
	if viaOpen != inside {
		t.Errorf("OpenNetns reached %s, want %s", viaOpen, inside)
	}
	if err := opened.Close(); err != nil {
		t.Fatal(err)
	}
	if err := opened.Do(func() error { return nil }); !errors.Is(err, ErrNetnsClosed) {
		t.Errorf("Do after Close: %v", err)
	}

	// A panic in fn is an error, not a crash.
	if err := ns.Do(func() error { panic("boom") }); err == nil {
		t.Error("panic in Do was swallowed without an error")
	}

	// Sysctls are per namespace: setting one inside does not change ours.
	outside, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	want := "1"
	if string(outside[:1]) == "1" {
		want = "0"
	}
	if err := ns.SetSysctl("net.ipv4.ip_forward", want); err != nil {
		t.Fatal(err)
	}
	if got, err := ns.Sysctl("net/ipv4/ip_forward"); err != nil || got != want {
		t.Errorf("sysctl inside = %q (%v), want %s", got, err, want)
	}
	if after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(after) != string(outside) {
		t.Errorf("the test's own namespace changed: %q -> %q", outside, after)
	}
	if err := ns.SetSysctl("net/../../etc/x", "1"); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("path escape: %v", err)
	}

	// Delete removes it; deleting again is fine; opening it fails typed.
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	deleted = true
	if err := ns.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", ns.Path(), err)
	}
	if _, err := OpenNetns(ns.Path()); !errors.Is(err, ErrNetnsNotFound) {
		t.Errorf("OpenNetns after Delete: %v", err)
	}
}

// TestNetnsDoConcurrent: many Do calls at once each land in their own
// namespace (threads are never shared between namespaces).
func TestNetnsDoConcurrent(t *testing.T) {
	nss := []*Netns{newNS(t), newNS(t), newNS(t)}
	want := make([]string, len(nss))
	for i, ns := range nss {
		if err := ns.Do(func() error { want[i], _ = os.Readlink("/proc/thread-self/ns/net"); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for round := range 60 {
		i := round % len(nss)
		wg.Go(func() {
			var got string
			_ = nss[i].Do(func() error { got, _ = os.Readlink("/proc/thread-self/ns/net"); return nil })
			if got != want[i] {
				mu.Lock()
				bad++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if bad != 0 {
		t.Errorf("%d of 60 Do calls ran in the wrong namespace", bad)
	}
}
