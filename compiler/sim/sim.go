// Package sim answers "what may talk to what, and why" for a policy model by
// compiling it and running packets through the tracer: the connectivity
// matrix of ../shared/formats/matrix.md and explain. It never evaluates policy
// itself — the compiled ruleset is the only judge.
//
// In: a normalised policy.Model. Out: Matrix, Explanation. Imports: stdlib,
// policy, compiler, compiler/ir, compiler/trace.
package sim

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/compiler/trace"
	"github.com/tabbynet/tabby/policy"
)

// SourcePort is the source port of every simulated probe: an ephemeral port,
// as a real client's would be.
const SourcePort = 40000

// syntheticBase is where pods without status.podIP get an address: 240.0.0.0/4
// is reserved, so it never collides with a real pod address.
var syntheticBase = netip.MustParseAddr("240.0.0.1")

// MissingIPError reports pods without an address in a model where addresses
// matter (some policy matches networks).
type MissingIPError struct{ Pods []string }

func (e *MissingIPError) Error() string {
	return fmt.Sprintf("pods without status.podIP: %s (needed because a policy matches IP networks; set status.podIP)",
		strings.Join(e.Pods, ", "))
}

// UnknownPodError reports a pod name that is not in the model.
type UnknownPodError struct{ Name string }

func (e *UnknownPodError) Error() string {
	return fmt.Sprintf("no pod %q (want NAMESPACE/NAME)", e.Name)
}

// Simulator holds one compiled model.
type Simulator struct {
	model  *policy.Model
	table  *ir.Table
	tracer *trace.Tracer
	pods   map[string]*policy.Endpoint
	names  []string // sorted ns/pod
}

// New compiles m with every endpoint local and prepares the tracer. Pods
// without an address get a synthetic one unless the model matches networks.
func New(m *policy.Model) (*Simulator, error) {
	m, err := withAddresses(m)
	if err != nil {
		return nil, err
	}
	t, err := compiler.Compile(m, compiler.Options{AllLocal: true})
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	tr, err := trace.New(t)
	if err != nil {
		return nil, fmt.Errorf("tracer: %w", err)
	}
	s := &Simulator{model: m, table: t, tracer: tr, pods: map[string]*policy.Endpoint{}}
	for i := range m.Endpoints {
		ep := &m.Endpoints[i]
		name := PodName(ep.Ref)
		s.pods[name] = ep
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Table is the compiled ruleset the simulator runs.
func (s *Simulator) Table() *ir.Table { return s.table }

// PodName is "namespace/name".
func PodName(r policy.Ref) string { return r.Namespace + "/" + r.Name }

func matchesNetworks(m *policy.Model) bool {
	if len(m.NetworkSets) > 0 {
		return true
	}
	for _, p := range m.Policies {
		for _, rs := range [][]policy.Rule{p.IngressRules, p.EgressRules} {
			for _, r := range rs {
				if len(r.Source.Nets)+len(r.Source.NotNets)+len(r.Destination.Nets)+len(r.Destination.NotNets) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// withAddresses returns m, or a copy whose address-less endpoints have
// synthetic addresses.
func withAddresses(m *policy.Model) (*policy.Model, error) {
	var missing []string
	for _, ep := range m.Endpoints {
		if len(ep.IPs) == 0 {
			missing = append(missing, PodName(ep.Ref))
		}
	}
	if len(missing) == 0 {
		return m, nil
	}
	if matchesNetworks(m) {
		sort.Strings(missing)
		return nil, &MissingIPError{Pods: missing}
	}
	cp := *m
	cp.Endpoints = append([]policy.Endpoint(nil), m.Endpoints...)
	used := map[netip.Addr]bool{}
	for _, ep := range cp.Endpoints {
		for _, ip := range ep.IPs {
			used[ip] = true
		}
	}
	next := syntheticBase
	for i := range cp.Endpoints {
		if len(cp.Endpoints[i].IPs) > 0 {
			continue
		}
		for used[next] {
			next = next.Next()
		}
		cp.Endpoints[i].IPs = []netip.Addr{next}
		used[next] = true
	}
	return &cp, nil
}

// Probe is one connection attempt of the matrix.
type Probe struct {
	From, To string // ns/pod
	Port     uint16
	Protocol policy.Protocol
}

// Result is a probe and its verdict.
type Result struct {
	Probe
	Allowed bool
}

// Matrix is every probe of a model, sorted by from, to, port, protocol name.
type Matrix struct {
	Pods    []string
	Results []Result
}

// Probes lists the matrix's probes: every ordered pair of distinct pods, for
// every containerPort (number, protocol) the destination declares.
func (s *Simulator) Probes() []Probe {
	var out []Probe
	for _, from := range s.names {
		for _, to := range s.names {
			if from == to {
				continue
			}
			seen := map[[2]uint32]bool{}
			for _, cp := range s.pods[to].Ports {
				k := [2]uint32{uint32(cp.Port), uint32(cp.Protocol)}
				if seen[k] {
					continue
				}
				seen[k] = true
				out = append(out, Probe{From: from, To: to, Port: cp.Port, Protocol: cp.Protocol})
			}
		}
	}
	SortProbes(out, func(i int) Probe { return out[i] })
	return out
}

// SortProbes sorts n items by (from, to, port, protocol name).
func SortProbes[T any](items []T, get func(i int) Probe) {
	sort.SliceStable(items, func(i, j int) bool {
		a, b := get(i), get(j)
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol.String() < b.Protocol.String()
	})
}

// Matrix traces every probe.
func (s *Simulator) Matrix() (*Matrix, error) {
	m := &Matrix{Pods: append([]string(nil), s.names...)}
	for _, p := range s.Probes() {
		res, err := s.trace(p)
		if err != nil {
			return nil, err
		}
		m.Results = append(m.Results, Result{Probe: p, Allowed: res.Verdict == ir.VerdictAccept})
	}
	return m, nil
}

// packet builds the probe's packet: first address of the source, and the
// destination's first address of the same family.
func (s *Simulator) packet(p Probe) (trace.Packet, error) {
	src, ok := s.pods[p.From]
	if !ok {
		return trace.Packet{}, &UnknownPodError{Name: p.From}
	}
	dst, ok := s.pods[p.To]
	if !ok {
		return trace.Packet{}, &UnknownPodError{Name: p.To}
	}
	sip := src.IPs[0]
	var dip netip.Addr
	for _, ip := range dst.IPs {
		if ip.Is4() == sip.Is4() {
			dip = ip
			break
		}
	}
	if !dip.IsValid() {
		return trace.Packet{}, fmt.Errorf("%s and %s share no IP family", p.From, p.To)
	}
	return trace.Packet{
		Src: sip, Dst: dip, Proto: uint8(p.Protocol), SrcPort: SourcePort, DstPort: p.Port,
		IIF: compiler.EndpointInterface(src),
		OIF: compiler.EndpointInterface(dst),
		Ct:  ir.CtNew,
	}, nil
}

func (s *Simulator) trace(p Probe) (trace.Result, error) {
	pkt, err := s.packet(p)
	if err != nil {
		return trace.Result{}, err
	}
	return s.tracer.Trace(pkt, ir.HookForward)
}
