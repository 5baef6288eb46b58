package perf

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/e2e/probe"
)

// binaries builds cmd/tabby and cmd/tabbyctl once per test binary run, only
// when a root benchmark needs them (plain go test stays fast).
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tabby-perf-bin-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/tabbynet/tabby/cmd/tabby", "github.com/tabbynet/tabby/cmd/tabbyctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the agent: %w\n%s", err, out)
	}
	return dir, nil
})

// requireRoot skips without root and returns the directory of the built
// binaries.
func requireRoot(b *testing.B) string {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root: network namespaces, nftables, raw sockets")
	}
	dir, err := binaries()
	if err != nil {
		b.Fatal(err)
	}
	return dir
}

// upLab builds a lab in a temporary state directory, torn down at the end.
func upLab(b *testing.B, name string, cfg lab.Config) *lab.Lab {
	b.Helper()
	bin := requireRoot(b)
	cfg.Name, cfg.StateDir = name, b.TempDir()
	cfg.Tabby, cfg.Tabbyctl = filepath.Join(bin, "tabby"), filepath.Join(bin, "tabbyctl")
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := lab.Down(ctx, cfg.StateDir, cfg.Name); err != nil {
			b.Errorf("lab down: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		b.Fatalf("lab up: %v", err)
	}
	return l
}

// agentStatus is the part of the agent's /status the benchmarks read: more
// than lab.AgentStatus (the batch's compile and sync durations).
type agentStatus struct {
	Ready            bool      `json:"ready"`
	LastBatch        time.Time `json:"lastBatch"`
	LastSync         time.Time `json:"lastSync"`
	LastChangeSeen   time.Time `json:"lastChangeSeen"`
	LastSyncDuration string    `json:"lastSyncDuration"`
	CompileDuration  string    `json:"compileDuration"`
	Syncs            uint64    `json:"syncs"`
	LastSyncError    string    `json:"lastSyncError"`
	Errors           []string  `json:"errors"`
}

func (s *agentStatus) durations() (compile, sync time.Duration) {
	compile, _ = time.ParseDuration(s.CompileDuration)
	sync, _ = time.ParseDuration(s.LastSyncDuration)
	return compile, sync
}

// healthClient talks to an agent's health server on the loopback of the
// namespace at nsPath: the socket is created on a thread inside it.
type healthClient struct {
	c    *http.Client
	addr string
}

func newHealthClient(nsPath, addr string) *healthClient {
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := probe.InNetns(nsPath, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, a)
			return err
		})
		return c, err
	}
	// Keep-alive: the latency benchmark polls every millisecond, and a new
	// connection per poll would cost more than the poll.
	return &healthClient{addr: addr, c: &http.Client{Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 1}}}
}

func (h *healthClient) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

func (h *healthClient) status(ctx context.Context) (*agentStatus, error) {
	code, body, err := h.get(ctx, "/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/status: HTTP %d", code)
	}
	st := &agentStatus{}
	if err := json.Unmarshal(body, st); err != nil {
		return nil, fmt.Errorf("/status: %w", err)
	}
	return st, nil
}

// procStatusMiB reads VmRSS and VmHWM of a process in MiB.
func procStatusMiB(pid int) (rss, hwm float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %q", pid, line)
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			hwm = kb / 1024
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS/VmHWM", pid)
	}
	return rss, hwm, nil
}

// writeRenamed writes data to a temporary file next to path and renames it
// into place, returning the time just before the rename: the moment the
// agents' inotify watch can first see the new content.
func writeRenamed(path string, data []byte) (time.Time, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return time.Time{}, err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return time.Time{}, fmt.Errorf("writing %s: %w %w", tmp.Name(), werr, cerr)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		_ = os.Remove(tmp.Name())
		return time.Time{}, err
	}
	at := time.Now()
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return time.Time{}, err
	}
	return at, nil
}
