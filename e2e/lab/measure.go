package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/probe"
	"github.com/tabbynet/tabby/policy"
)

// Defaults of ProbeOptions. Every probe waits for its own answer, so a
// denied probe costs Timeout; running them all at once makes a whole matrix
// cost about one Timeout.
const (
	DefaultProbeTimeout = time.Second
	DefaultConcurrency  = 512
)

// ProbeOptions tune a measurement.
type ProbeOptions struct {
	// Timeout of one probe (default DefaultProbeTimeout).
	Timeout time.Duration
	// Concurrency bounds the probes in flight (default DefaultConcurrency).
	Concurrency int
}

// Measurement is one measured probe and its evidence.
type Measurement struct {
	sim.Probe
	Reached  bool
	Failure  probe.Failure
	RTT      time.Duration
	Src, Dst netip.Addr
}

// MiswiredError reports a probe answered by the wrong pod: the lab itself is
// broken (duplicate address, wrong route), so no verdict can be trusted.
type MiswiredError struct {
	Probe  sim.Probe
	Banner string
}

func (e *MiswiredError) Error() string {
	return fmt.Sprintf("lab: probe %s -> %s %d/%s was answered by %q", e.Probe.From, e.Probe.To,
		e.Probe.Port, e.Probe.Protocol, e.Banner)
}

// model normalises the objects the agents enforce now.
func (l *Lab) model() (*policy.Model, error) {
	m, errs := policy.Normalize(l.objs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("lab: manifests: %w", errors.Join(errs...))
	}
	return m, nil
}

// Probes lists the probes of the current manifests, exactly as compiler/sim
// does (it is sim's own list), with the sorted pod names.
func (l *Lab) Probes() (pods []string, probes []sim.Probe, err error) {
	m, err := l.model()
	if err != nil {
		return nil, nil, err
	}
	s, err := sim.New(m)
	if err != nil {
		return nil, nil, fmt.Errorf("lab: %w", err)
	}
	for _, ep := range m.Endpoints {
		pods = append(pods, sim.PodName(ep.Ref))
	}
	sort.Strings(pods)
	return pods, s.Probes(), nil
}

// Probe measures the whole matrix with default options.
func (l *Lab) Probe(ctx context.Context) (*sim.Matrix, error) {
	return l.ProbeWith(ctx, ProbeOptions{})
}

// ProbeWith measures the whole matrix.
func (l *Lab) ProbeWith(ctx context.Context, opts ProbeOptions) (*sim.Matrix, error) {
	pods, probes, err := l.Probes()
	if err != nil {
		return nil, err
	}
	ms, err := l.Measure(ctx, probes, opts)
	if err != nil {
		return nil, err
	}
	return MatrixOf(pods, ms), nil
}

// MatrixOf turns measurements into a matrix (Allowed = reached), sorted as
// compiler/sim sorts, to print with sim.WriteJSON / sim.WriteTable.
func MatrixOf(pods []string, ms []Measurement) *sim.Matrix {
	m := &sim.Matrix{Pods: append([]string(nil), pods...)}
	for _, x := range ms {
		m.Results = append(m.Results, sim.Result{Probe: x.Probe, Allowed: x.Reached})
	}
	sim.SortProbes(m.Results, func(i int) sim.Probe { return m.Results[i].Probe })
	return m
}

// Measure sends the given probes (any subset of Probes) with real packets
// from each source pod's namespace, in parallel, after flushing conntrack
// on every node (see the package documentation). Results are in the order
// of probes.
func (l *Lab) Measure(ctx context.Context, probes []sim.Probe, opts ProbeOptions) ([]Measurement, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultProbeTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	m, err := l.model()
	if err != nil {
		return nil, err
	}
	ips := map[string][]netip.Addr{}
	for _, ep := range m.Endpoints {
		ips[sim.PodName(ep.Ref)] = ep.IPs
	}
	out := make([]Measurement, len(probes))
	netns := make([]string, len(probes))
	for i, p := range probes {
		ns, name, _ := strings.Cut(p.From, "/")
		src, ok := l.pod(ns, name)
		if !ok {
			return nil, fmt.Errorf("lab: probe from %s: not one of the lab's pods", p.From)
		}
		dst, ok := podAddr(ips[p.From], ips[p.To])
		if !ok {
			return nil, fmt.Errorf("lab: probe %s -> %s: no address of the same family", p.From, p.To)
		}
		out[i] = Measurement{Probe: p, Src: ips[p.From][0], Dst: dst}
		netns[i] = netnsPath(src.Netns)
	}
	if err := l.flushConntrack(); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	for i := range out {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			x := &out[i]
			res, err := probe.Probe(ctx, netns[i], x.Dst, x.Port, probe.Protocol(x.Protocol.String()), opts.Timeout)
			if err != nil {
				cancel(fmt.Errorf("lab: %w", err))
				return
			}
			if res.Reached && res.Banner != x.To {
				cancel(&MiswiredError{Probe: x.Probe, Banner: res.Banner})
				return
			}
			x.Reached, x.Failure, x.RTT = res.Reached, res.Failure, res.RTT
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// flushConntrack forgets every tracked flow on every node, so each probe
// is a new connection, which is what the matrix is about.
func (l *Lab) flushConntrack() error {
	for _, nd := range l.st.Nodes {
		err := probe.InNetns(netnsPath(nd.Netns), func() error {
			// The package-level call opens its netlink socket on this
			// thread, hence in the node namespace.
			return netlink.ConntrackTableFlush(netlink.ConntrackTable)
		})
		if err != nil {
			return fmt.Errorf("lab: %s: flush conntrack: %w", nd.Name, err)
		}
	}
	return nil
}
