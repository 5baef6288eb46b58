package lab_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/e2e/lab"
	"github.com/tabbynet/tabby/policy"
)

// Helpers of the Kubernetes-mode end-to-end tests (kube_*_test.go).

// decodeObjects decodes manifests written in a test.
func decodeObjects(t *testing.T, yamlText string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// nftTables reads every node's table as nft prints it (--stateless: no
// counters, which move with every probe). It is the kernel's word on what
// a node enforces: an agent that resynced to another table changes it.
func nftTables(ctx context.Context, l *lab.Lab) (map[string]string, error) {
	out := map[string]string{}
	for _, nd := range l.State().Nodes {
		b, err := exec.CommandContext(ctx, "ip", "netns", "exec", nd.Netns,
			"nft", "--stateless", "list", "table", "inet", compiler.DefaultTableName).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s: nft list table: %w: %s", nd.Name, err, b)
		}
		out[nd.Name] = string(b)
	}
	return out, nil
}

// statuses reads every agent's /status.
func statuses(ctx context.Context, l *lab.Lab) (map[string]*lab.AgentStatus, error) {
	out := map[string]*lab.AgentStatus{}
	for _, nd := range l.State().Nodes {
		st, err := l.Status(ctx, nd.Name)
		if err != nil {
			return nil, err
		}
		out[nd.Name] = st
	}
	return out, nil
}

// sameEnforcement compares two readings of the nodes' tables and agents:
// the same table in the kernel, no sync since, no failed sync and, unless
// problems are expected (the API server is away), no problem reported. It
// returns what differs.
func sameEnforcement(tablesBefore, tablesNow map[string]string, before, now map[string]*lab.AgentStatus, problemsExpected bool) []string {
	var diffs []string
	for node, tb := range tablesBefore {
		if tn := tablesNow[node]; tn != tb {
			diffs = append(diffs, fmt.Sprintf("%s: the kernel's table changed:\n%s", node, lineDiff(tb, tn)))
		}
	}
	for node, b := range before {
		n := now[node]
		switch {
		case n == nil:
			diffs = append(diffs, node+": no status")
		case n.Syncs != b.Syncs || !n.LastSync.Equal(b.LastSync):
			diffs = append(diffs, fmt.Sprintf("%s: the agent synced again (syncs %d -> %d, last %v -> %v)",
				node, b.Syncs, n.Syncs, b.LastSync, n.LastSync))
		case n.LastSyncError != "":
			diffs = append(diffs, fmt.Sprintf("%s: the agent's sync failed: %s", node, n.LastSyncError))
		case len(n.Errors) > 0 && !problemsExpected:
			diffs = append(diffs, fmt.Sprintf("%s: the agent reports %v", node, n.Errors))
		}
	}
	return diffs
}

// lineDiff lists the lines only in a (-) and only in b (+), at most 20.
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if count[l] > 0 {
			out = append(out, "  - "+l)
			count[l]--
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if count[l] < 0 {
			out = append(out, "  + "+l)
			count[l]++
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("  ... %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}
