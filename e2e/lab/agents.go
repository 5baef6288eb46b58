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
	"github.com/tabbynet/tabby/policy"
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
	source := []string{"--manifests", filepath.Dir(l.st.Manifests)}
	if l.st.Kubernetes != nil {
		// As the DaemonSet runs it, with deploy's identity and RBAC.
		source = []string{"--kubeconfig", nd.Kubeconfig}
	}
	args := append(append([]string{l.cfg.Tabby, "agent", "--node", nd.Name}, source...),
		"--health-addr", nd.HealthAddr, "--log-format", "text")
	args = append(args, l.cfg.AgentArgs...)
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
	Node      string    `json:"node"`
	Ready     bool      `json:"ready"`
	LastBatch time.Time `json:"lastBatch"`
	LastSync  time.Time `json:"lastSync"`
	// LastChangeSeen is when the agent's datastore saw the earliest change
	// the last successful sync applied (zero: it applied none).
	LastChangeSeen    time.Time `json:"lastChangeSeen"`
	Syncs             uint64    `json:"syncs"`
	LastSyncError     string    `json:"lastSyncError"`
	Policies          int       `json:"policies"`
	Endpoints         int       `json:"endpoints"`
	LocalEndpoints    int       `json:"localEndpoints"`
	NetworkSets       int       `json:"networkSets"`
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

// kubeQuietPeriod replaces quietPeriod in Kubernetes mode for a batch that
// carries evidence of having applied the lab's writes (see syncEvidence).
// That rules out the batch that was already running at the write; what is
// left is a watch event of the same writes that reaches the agent after
// the batch that applied the others. Such stragglers trail by milliseconds,
// and the counts catch those that create or delete objects. Should one
// still come later, the tests re-probe every difference from the
// prediction with a long timeout, so it costs time, not a wrong verdict.
const kubeQuietPeriod = 20 * time.Millisecond

// syncEvidence is what an agent's /status must show, besides a batch after
// the writes, for WaitSynced to use kubeQuietPeriod: the batch was a
// successful sync that applied a change the agent saw after the last write
// began (lastChangeSeen), and the agent holds as many policies, endpoints
// (local ones on its node) and network sets as the lab's desired state
// normalises to. Counts catch the common way a sync can have applied only
// part of the writes (an object created or deleted whose event is still on
// its way); a change that keeps the counts is covered by the quiet period.
type syncEvidence struct {
	policies, endpoints, netsets int
	local                        map[string]int // by node name
}

// evidence computes the counts of the lab's desired state; nil (no
// evidence: the full quiet period) outside Kubernetes mode or when the
// objects do not normalise cleanly.
func (l *Lab) evidence() *syncEvidence {
	if l.kube == nil {
		return nil
	}
	m, errs := policy.Normalize(l.objs)
	if len(errs) > 0 {
		return nil
	}
	ev := &syncEvidence{policies: len(m.Policies), endpoints: len(m.Endpoints), netsets: len(m.NetworkSets),
		local: map[string]int{}}
	for _, ep := range m.Endpoints {
		ev.local[ep.Node]++
	}
	return ev
}

// shows reports whether st is a sync after since with ev's counts on node.
func (ev *syncEvidence) shows(st *AgentStatus, node string, since time.Time) bool {
	return ev != nil && st.LastSync.Equal(st.LastBatch) && !st.LastChangeSeen.Before(since) &&
		st.Policies == ev.policies && st.Endpoints == ev.endpoints && st.NetworkSets == ev.netsets &&
		st.LocalEndpoints == ev.local[node]
}

// DefaultSyncTimeout bounds WaitSynced when ctx has no deadline.
const DefaultSyncTimeout = 20 * time.Second

// WaitSynced waits until every agent has applied the last UpdateManifests:
// its /status shows a batch that ended after the update, unchanged for
// quietPeriod, no pending pod interfaces, no sync error and no object
// errors. Without a pending update it returns at once.
//
// In Kubernetes mode, an agent whose last batch shows that it applied the
// writes (a sync of a change seen after the last write began, with the
// policy, endpoint and network-set counts of the desired state) needs to
// stay the last one only for kubeQuietPeriod.
func (l *Lab) WaitSynced(ctx context.Context) error {
	if l.updated.IsZero() {
		return nil
	}
	if err := l.waitSynced(ctx, l.updated, l.evidence()); err != nil {
		return err
	}
	l.updated = time.Time{}
	return nil
}

// WaitSyncedAfter is WaitSynced for a change the lab did not make itself
// (kubectl, a client of Kube): it waits until every agent shows a batch
// that ended after since, unchanged for the quiet period, with no pending
// interfaces and no errors. Take since before making the change.
func (l *Lab) WaitSyncedAfter(ctx context.Context, since time.Time) error {
	return l.waitSynced(ctx, since, nil)
}

func (l *Lab) waitSynced(ctx context.Context, since time.Time, ev *syncEvidence) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSyncTimeout)
		defer cancel()
	}
	errs := make([]error, len(l.st.Nodes))
	var wg sync.WaitGroup
	for i, nd := range l.st.Nodes {
		wg.Go(func() { errs[i] = l.waitNodeSynced(ctx, nd, since, ev) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Lab) waitNodeSynced(ctx context.Context, nd NodeState, since time.Time, ev *syncEvidence) error {
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
		case len(st.Errors) > 0 && l.st.Kubernetes == nil:
			return l.agentErr(nd, fmt.Errorf("reports errors: %s", strings.Join(st.Errors, "; ")))
		case len(st.Errors) > 0:
			// Informers of different kinds deliver independently: a policy
			// can arrive before the Tier it names, and is reported until
			// the Tier follows (then re-normalised in the next batch). An
			// error that stays ends the wait with ctx.
			problem = "reports errors: " + strings.Join(st.Errors, "; ")
		case st.LastSyncError != "":
			problem = "sync failed: " + st.LastSyncError
		case len(st.PendingInterfaces) > 0:
			problem = "pods without interface: " + strings.Join(st.PendingInterfaces, ", ")
		case !st.LastBatch.Equal(seen):
			seen, seenAt = st.LastBatch, now
			problem = "still batching"
		case now.Sub(seenAt) >= quietPeriod:
			return nil
		case now.Sub(seenAt) >= kubeQuietPeriod && ev.shows(st, nd.Name, since):
			return nil
		}
		select {
		case <-ctx.Done():
			return l.agentErr(nd, fmt.Errorf("not synced: %s: %w", problem, ctx.Err()))
		case <-time.After(25 * time.Millisecond):
		}
	}
}
