package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/e2e/probe"
)

// startServer starts `tabbyctl lab serve` for a pod with ports and waits
// until every socket is open.
func (l *Lab) startServer(p *PodState) error {
	what := "server " + p.Namespace + "/" + p.Name
	log := filepath.Join(l.st.StateDir, logsDir, "server-"+p.Netns+".log")
	args := []string{l.cfg.Tabbyctl, "lab", "serve", "--netns", netnsPath(p.Netns),
		"--banner", p.Namespace + "/" + p.Name, "--ready-fd", "3"}
	for _, port := range p.Ports {
		args = append(args, "--port", port)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer r.Close()
	// Started inside the pod namespace as well: the process (not just its
	// sockets) then belongs to the pod, so `ip netns pids` and Down's
	// search for strays find it.
	proc, run, err := l.startDetached(args, log, p.Netns, w)
	w.Close() // the child has its copy: EOF now means the child is gone
	if err != nil {
		return err
	}
	p.Server = proc
	l.procs[proc.PID] = run
	if err := l.save(); err != nil {
		return err
	}
	line, err := waitReadyLine(r, l.cfg.ReadyTimeout)
	switch {
	case err != nil:
		return &ProcessError{What: what, Log: log, Err: fmt.Errorf("not ready: %w", err)}
	case line != ServeReady:
		return &ProcessError{What: what, Log: log, Err: errors.New(line)}
	}
	return nil
}

// startAgent starts `tabby agent` inside node nd's namespace, logging to
// logs/agent-<node>.log. Readiness is waited for separately, so that all
// agents start their first sync in parallel.
func (l *Lab) startAgent(nd *NodeState) error {
	log := filepath.Join(l.st.StateDir, logsDir, "agent-"+nd.Name+".log")
	args := append([]string{l.cfg.Tabby, "agent", "--node", nd.Name,
		"--manifests", filepath.Dir(l.st.Manifests), "--health-addr", nd.HealthAddr, "--log-format", "text"},
		l.cfg.AgentArgs...)
	proc, run, err := l.startDetached(args, log, nd.Netns)
	if err != nil {
		return err
	}
	nd.Agent = proc
	l.procs[proc.PID] = run
	return l.save()
}

// AgentError reports an agent that did not become ready, or that reports
// problems after a change.
type AgentError struct {
	Node string
	Log  string
	Err  error
}

func (e *AgentError) Error() string {
	msg := fmt.Sprintf("lab: agent %s: %v (log: %s)", e.Node, e.Err, e.Log)
	if tail := logTail(e.Log, 8); tail != "" {
		msg += "\n" + tail
	}
	return msg
}

func (e *AgentError) Unwrap() error { return e.Err }

func (l *Lab) agentErr(nd NodeState, err error) error {
	log := ""
	if nd.Agent != nil {
		log = nd.Agent.Log
	}
	return &AgentError{Node: nd.Name, Log: log, Err: err}
}

// httpClient returns a client whose connections are made inside the node
// namespace: the agent's health address is on that namespace's loopback.
func httpClient(netns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := probe.InNetns(netnsPath(netns), func() error {
			var err error
			// The socket is created (and connected: loopback) on this
			// thread, so it lives in the node namespace.
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
		Timeout:   2 * time.Second,
	}
}

// get fetches a health endpoint of nd's agent.
func (l *Lab) get(ctx context.Context, nd NodeState, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.HealthAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient(nd.Netns).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// waitReady polls nd's /readyz until 200, the agent exits, or the timeout.
func (l *Lab) waitReady(ctx context.Context, nd NodeState) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	var exited <-chan struct{}
	if nd.Agent != nil {
		if r := l.procs[nd.Agent.PID]; r != nil {
			exited = r.exited
		}
	}
	last := "no answer"
	for {
		code, body, err := l.get(ctx, nd, "/readyz")
		switch {
		case err == nil && code == http.StatusOK:
			return nil
		case err == nil:
			last = fmt.Sprintf("/readyz %d %s", code, strings.TrimSpace(string(body)))
		default:
			last = err.Error()
		}
		select {
		case <-exited:
			return l.agentErr(nd, fmt.Errorf("exited before ready: %v", l.procs[nd.Agent.PID].err))
		case <-ctx.Done():
			return l.agentErr(nd, fmt.Errorf("not ready after %v: %s", l.cfg.ReadyTimeout, last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AgentStatus is the part of an agent's /status the lab reads.
type AgentStatus struct {
	Node              string    `json:"node"`
	Ready             bool      `json:"ready"`
	LastBatch         time.Time `json:"lastBatch"`
	LastSync          time.Time `json:"lastSync"`
	Syncs             uint64    `json:"syncs"`
	LastSyncError     string    `json:"lastSyncError"`
	LocalEndpoints    int       `json:"localEndpoints"`
	PendingInterfaces []string  `json:"pendingInterfaces"`
	Errors            []string  `json:"errors"`
}

// Status fetches one agent's /status.
func (l *Lab) Status(ctx context.Context, node string) (*AgentStatus, error) {
	nd, ok := l.node(node)
	if !ok {
		return nil, fmt.Errorf("lab: no node %q", node)
	}
	code, body, err := l.get(ctx, nd, "/status")
	if err != nil {
		return nil, l.agentErr(nd, fmt.Errorf("/status: %w", err))
	}
	if code != http.StatusOK {
		return nil, l.agentErr(nd, fmt.Errorf("/status: HTTP %d", code))
	}
	st := &AgentStatus{}
	if err := json.Unmarshal(body, st); err != nil {
		return nil, l.agentErr(nd, fmt.Errorf("/status: %w", err))
	}
	return st, nil
}

// quietPeriod is how long an agent's last batch must stay the same before
// WaitSynced believes it: a batch that was already running when the
// manifests changed can finish after the change without having seen it,
// and the batch that does see it follows within the agent's debounce.
const quietPeriod = 100 * time.Millisecond

// DefaultSyncTimeout bounds WaitSynced when ctx has no deadline.
const DefaultSyncTimeout = 20 * time.Second

// WaitSynced waits until every agent has applied the last UpdateManifests:
// its /status shows a batch that ended after the update, unchanged for
// quietPeriod, no pending pod interfaces, no sync error and no object
// errors. Without a pending update it returns at once.
func (l *Lab) WaitSynced(ctx context.Context) error {
	if l.updated.IsZero() {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSyncTimeout)
		defer cancel()
	}
	errs := make([]error, len(l.st.Nodes))
	var wg sync.WaitGroup
	for i, nd := range l.st.Nodes {
		wg.Go(func() { errs[i] = l.waitNodeSynced(ctx, nd, l.updated) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.updated = time.Time{}
	return nil
}

func (l *Lab) waitNodeSynced(ctx context.Context, nd NodeState, since time.Time) error {
	var (
		seen    time.Time // LastBatch as last observed
		seenAt  time.Time // when it was first observed
		problem = "no batch after the update yet"
	)
	for {
		st, err := l.Status(ctx, nd.Name)
		if err != nil {
			if ctx.Err() != nil {
				return l.agentErr(nd, fmt.Errorf("not synced: %s: %w", problem, ctx.Err()))
			}
			return err
		}
		now := time.Now()
		switch {
		case !st.LastBatch.After(since):
			problem = "no batch after the update yet"
		case len(st.Errors) > 0:
			return l.agentErr(nd, fmt.Errorf("reports errors: %s", strings.Join(st.Errors, "; ")))
		case st.LastSyncError != "":
			problem = "sync failed: " + st.LastSyncError
		case len(st.PendingInterfaces) > 0:
			problem = "pods without interface: " + strings.Join(st.PendingInterfaces, ", ")
		case !st.LastBatch.Equal(seen):
			seen, seenAt = st.LastBatch, now
			problem = "still batching"
		case now.Sub(seenAt) >= quietPeriod:
			return nil
		}
		select {
		case <-ctx.Done():
			return l.agentErr(nd, fmt.Errorf("not synced: %s: %w", problem, ctx.Err()))
		case <-time.After(25 * time.Millisecond):
		}
	}
}
