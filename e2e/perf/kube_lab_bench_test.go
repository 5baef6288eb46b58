package perf

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/e2e/kubetest"
	"github.com/tabbynet/tabby/e2e/lab"
)

// Helpers of the Kubernetes-mode benchmarks (kube_*_bench_test.go).

// kubeNodes is the number of nodes of the Kubernetes-mode benchmarks' labs:
// "enforced on every node" means something with more than two.
const kubeNodes = 3

// upKubeLab is upLab in Kubernetes mode (skipped without the kube
// binaries, failed under CI).
func upKubeLab(b *testing.B, name string, cfg lab.Config) *lab.Lab {
	b.Helper()
	requireRoot(b)
	kubetest.RequireBinaries(b)
	cfg.Kubernetes = true
	return upLab(b, name, cfg)
}

// kubeNode is one lab node as the benchmarks watch it.
type kubeNode struct {
	name  string
	netns string // path
	hc    *healthClient
}

func nodesOf(l *lab.Lab) []kubeNode {
	var out []kubeNode
	for _, nd := range l.State().Nodes {
		ns := "/run/netns/" + nd.Netns
		out = append(out, kubeNode{name: nd.Name, netns: ns, hc: newHealthClient(ns, nd.HealthAddr)})
	}
	return out
}

// statusAll reads every node's agent status.
func statusAll(ctx context.Context, nodes []kubeNode) ([]*agentStatus, error) {
	out := make([]*agentStatus, len(nodes))
	for i, n := range nodes {
		st, err := n.hc.status(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.name, err)
		}
		out[i] = st
	}
	return out, nil
}

// waitAllSynced polls every node's agent (every millisecond, all nodes at
// once) until done accepts its status, and returns the accepted statuses.
// done sees the node's index and status; a status that reports errors or
// a failed sync ends the wait with an error.
func waitAllSynced(ctx context.Context, nodes []kubeNode, timeout time.Duration,
	done func(i int, st *agentStatus) (bool, error)) ([]*agentStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]*agentStatus, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			for {
				st, err := n.hc.status(ctx)
				if err == nil && (st.LastSyncError != "" || len(st.Errors) > 0) {
					err = fmt.Errorf("agent reports %q %v", st.LastSyncError, st.Errors)
				}
				var ok bool
				if err == nil {
					ok, err = done(i, st)
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", n.name, err)
					return
				}
				if ok {
					out[i] = st
					return
				}
				select {
				case <-ctx.Done():
					errs[i] = fmt.Errorf("%s: no sync: %w (last status: lastSync %v, lastChangeSeen %v, syncs %d)",
						n.name, ctx.Err(), st.LastSync, st.LastChangeSeen, st.Syncs)
					return
				case <-time.After(time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// latest is the latest LastSync of sts.
func latest(sts []*agentStatus) time.Time {
	var t time.Time
	for _, st := range sts {
		if st.LastSync.After(t) {
			t = st.LastSync
		}
	}
	return t
}

// inSets reports whether ip is an element of one of the address sets of
// the Tabby table in the network namespace at nsPath, read from the kernel
// over netlink. Interval sets hold a start element and an interval-end
// element per range: ip is in one when the greatest element at or below it
// is a start.
func inSets(nsPath string, ip netip.Addr) (bool, error) {
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", nsPath, err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return false, err
	}
	sets, err := c.GetSets(&nftables.Table{Name: compiler.DefaultTableName, Family: nftables.TableFamilyINet})
	if err != nil {
		return false, fmt.Errorf("%s: sets: %w", nsPath, err)
	}
	keyType := nftables.TypeIPAddr
	if ip.Is6() {
		keyType = nftables.TypeIP6Addr
	}
	key := ip.AsSlice()
	for _, s := range sets {
		if s.IsMap || s.Concatenation || s.KeyType.Name != keyType.Name {
			continue
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return false, fmt.Errorf("%s: set %s: %w", nsPath, s.Name, err)
		}
		if !s.Interval {
			if slices.ContainsFunc(els, func(e nftables.SetElement) bool { return bytes.Equal(e.Key, key) }) {
				return true, nil
			}
			continue
		}
		var best *nftables.SetElement
		for i := range els {
			e := &els[i]
			if bytes.Compare(e.Key, key) <= 0 && (best == nil || bytes.Compare(e.Key, best.Key) > 0) {
				best = e
			}
		}
		if best != nil && !best.IntervalEnd {
			return true, nil
		}
	}
	return false, nil
}
