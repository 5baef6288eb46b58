package lab_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/lab"
)

// binDir holds tabby and tabbyctl built by TestMain (root only: the lab
// tests skip otherwise).
var binDir string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "tabby-lab-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
				"github.com/tabbynet/tabby/cmd/tabby", "github.com/tabbynet/tabby/cmd/tabbyctl")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building the lab binaries: %v\n%s", err, out)
				return 1
			}
			binDir = dir
		}
		return m.Run()
	}())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || binDir == "" {
		t.Skip("needs root: network namespaces, nftables, raw sockets")
	}
}

// upLab builds a lab named name in a temporary state directory and tears
// it down when the test ends, whatever happened.
func upLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.Tabby = filepath.Join(binDir, "tabby")
	cfg.Tabbyctl = filepath.Join(binDir, "tabbyctl")
	// Registered before Up: a failing or interrupted Up leaves things too.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := lab.Down(ctx, cfg.StateDir, cfg.Name); err != nil {
			t.Errorf("lab down: %v", err)
		}
		assertNoNamespaces(t, cfg.Name)
	})
	start := time.Now()
	l, err := lab.Up(context.Background(), cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab %s up in %v: %d nodes, %d pods", cfg.Name, time.Since(start).Round(time.Millisecond),
		len(l.State().Nodes), len(l.State().Pods))
	return l
}

// assertNoNamespaces checks that nothing named like the lab is left.
func assertNoNamespaces(t *testing.T, name string) {
	t.Helper()
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}
