package sim

import (
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/compiler/trace"
	"github.com/tabbynet/tabby/policy"
)

// Explanation is explain's answer for one probe.
type Explanation struct {
	Probe
	Allowed bool
	Why     trace.Explanation
	Result  trace.Result
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
	return &Explanation{Probe: p, Allowed: why.Allowed, Why: why, Result: res}, nil
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
	fmt.Fprintf(&b, "  ingress to %s: %s\n", e.To, e.Why.Ingress.Words())
	b.WriteString("  path through the ruleset:\n")
	for _, st := range e.Result.Steps {
		if st.Rule == nil {
			continue
		}
		fmt.Fprintf(&b, "    %-40s %s\n", st.Chain, st.Rule.String())
	}
	return b.String()
}
