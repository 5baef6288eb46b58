package sim

import (
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/compiler/trace"
	"github.com/tabbynet/tabby/policy"
)

// Explanation is explain's answer for one probe.
type Explanation struct {
	Probe
	Allowed bool
	Why     trace.Explanation
	Result  trace.Result
	// IngressAlone is the destination's ingress decision traced on its own,
	// set when egress dropped the packet before ingress ran.
	IngressAlone *trace.DirectionDecision
}

// Explain traces one connection and says which policy, rule and tier decided
// each direction.
func (s *Simulator) Explain(from, to string, port uint16, proto policy.Protocol) (*Explanation, error) {
	p := Probe{From: from, To: to, Port: port, Protocol: proto}
	res, err := s.trace(p)
	if err != nil {
		return nil, err
	}
	why := trace.Explain(res, from, to)
	ex := &Explanation{Probe: p, Allowed: why.Allowed, Why: why, Result: res}
	if why.Ingress.Reason == trace.ReasonNotEvaluated {
		// Egress dropped the packet. The destination's own verdict is still
		// worth knowing (fixing egress alone may not be enough): it is what
		// the destination's node decides for the same packet arriving from
		// another node, i.e. with no local source interface.
		pkt, err := s.packet(p)
		if err != nil {
			return nil, err
		}
		pkt.IIF = ""
		alone, err := s.tracer.Trace(pkt, ir.HookForward)
		if err != nil {
			return nil, err
		}
		in := trace.Explain(alone, from, to).Ingress
		ex.IngressAlone = &in
	}
	return ex, nil
}

// Text renders the explanation for a person: the verdict, then each
// direction in words, then the rules the packet went through.
func (e *Explanation) Text() string {
	var b strings.Builder
	verdict := "DENIED"
	if e.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(&b, "%s -> %s port %d/%s: %s\n", e.From, e.To, e.Port, e.Protocol, verdict)
	fmt.Fprintf(&b, "  egress from %s: %s\n", e.From, e.Why.Egress.Words())
	if e.IngressAlone != nil {
		fmt.Fprintf(&b, "  ingress to %s: not reached; on its own it would be %s\n", e.To, e.IngressAlone.Words())
	} else {
		fmt.Fprintf(&b, "  ingress to %s: %s\n", e.To, e.Why.Ingress.Words())
	}
	b.WriteString("  path through the ruleset:\n")
	for _, st := range e.Result.Steps {
		if st.Rule == nil {
			continue
		}
		fmt.Fprintf(&b, "    %-40s %s\n", st.Chain, st.Rule.String())
	}
	return b.String()
}
