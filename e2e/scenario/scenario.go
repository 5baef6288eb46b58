// Package scenario reads the conformance corpus format documented in
// e2e/testdata/conformance/README.md: a header, Kubernetes/Tabby objects
// upserted in order, Delete documents, and Expectation checkpoints.
//
// In: scenario files. Out: Steps, each the full object state at one
// Expectation plus that Expectation. Imports: stdlib, policy/, sigs.k8s.io/yaml.
package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/policy"
)

// APIVersion is the apiVersion of the corpus's own kinds.
const APIVersion = "test.tabby.dev/v1"

// Scenario is one loaded scenario file.
type Scenario struct {
	Name     string
	File     string
	Upstream string
	Steps    []Step
}

// Step is the state at one Expectation.
type Step struct {
	Name        string
	Objects     []policy.Object // in upsert order, deletions applied
	Expectation Expectation
	// Changes are the object events since the previous step, in file order
	// (for incremental/convergence tests): an Object upsert or a Delete.
	Changes []Change
}

// Change is one event between steps.
type Change struct {
	Upsert *policy.Object
	Delete *policy.Ref
}

// Expectation is a checkpoint.
type Expectation struct {
	Probes []ProbeExpectation `json:"probes"`
}

// ProbeExpectation expects reachability for one port/protocol.
type ProbeExpectation struct {
	Port     uint16    `json:"port"`
	Protocol string    `json:"protocol,omitempty"`
	Default  *bool     `json:"default,omitempty"`
	Expect   []Pattern `json:"expect,omitempty"`
}

// Pattern is one expectation entry; From/To are "ns/pod" with "*" wildcards.
type Pattern struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Allowed bool   `json:"allowed"`
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

type scenarioDoc struct {
	header
	Spec struct {
		Include  []string `json:"include"`
		Upstream string   `json:"upstream"`
	} `json:"spec"`
}

type expectationDoc struct {
	header
	Spec Expectation `json:"spec"`
}

type deleteDoc struct {
	header
	Spec struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"spec"`
}

// Load reads a scenario file and its includes.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	docs := policy.SplitDocuments(data)
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: empty scenario", path)
	}
	var hd scenarioDoc
	if err := yaml.UnmarshalStrict(docs[0], &hd); err != nil || hd.Kind != "Scenario" || hd.APIVersion != APIVersion {
		return nil, fmt.Errorf("%s: first document must be %s Scenario (%v)", path, APIVersion, err)
	}
	sc := &Scenario{Name: hd.Metadata.Name, File: path, Upstream: hd.Spec.Upstream}
	st := newState()
	for _, inc := range hd.Spec.Include {
		objs, err := policy.LoadFiles(filepath.Join(filepath.Dir(path), inc))
		if err != nil {
			return nil, fmt.Errorf("%s: include %s: %w", path, inc, err)
		}
		for i := range objs {
			st.upsert(objs[i])
		}
	}
	var changes []Change
	for i, doc := range docs[1:] {
		src := policy.Source{File: path, Doc: i + 2}
		var h header
		if err := yaml.Unmarshal(doc, &h); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if h.APIVersion != APIVersion {
			o, err := policy.DecodeDocument(src, doc)
			if err != nil {
				return nil, err
			}
			st.upsert(o)
			changes = append(changes, Change{Upsert: &o})
			continue
		}
		switch h.Kind {
		case "Expectation":
			var e expectationDoc
			if err := yaml.UnmarshalStrict(doc, &e); err != nil {
				return nil, fmt.Errorf("%s: Expectation: %w", src, err)
			}
			if err := e.Spec.validate(); err != nil {
				return nil, fmt.Errorf("%s: Expectation: %w", src, err)
			}
			name := e.Metadata.Name
			if name == "" {
				name = fmt.Sprintf("step %d", len(sc.Steps)+1)
			}
			sc.Steps = append(sc.Steps, Step{Name: name, Objects: st.objects(), Expectation: e.Spec, Changes: changes})
			changes = nil
		case "Delete":
			var d deleteDoc
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				return nil, fmt.Errorf("%s: Delete: %w", src, err)
			}
			ref := policy.Ref{Kind: policy.Kind(d.Spec.Kind), Namespace: d.Spec.Namespace, Name: d.Spec.Name}
			if !st.delete(ref) {
				return nil, fmt.Errorf("%s: Delete: no earlier object %s", src, ref)
			}
			changes = append(changes, Change{Delete: &ref})
		default:
			return nil, fmt.Errorf("%s: unknown kind %q of %s", src, h.Kind, APIVersion)
		}
	}
	if len(sc.Steps) == 0 {
		return nil, fmt.Errorf("%s: no Expectation", path)
	}
	return sc, nil
}

func (e Expectation) validate() error {
	if len(e.Probes) == 0 {
		return errors.New("no probes")
	}
	for i, p := range e.Probes {
		if p.Port == 0 {
			return fmt.Errorf("probes[%d].port: required", i)
		}
		if _, err := ParseProtocol(p.Protocol); err != nil {
			return fmt.Errorf("probes[%d].protocol: %w", i, err)
		}
		if p.Default == nil && len(p.Expect) == 0 {
			return fmt.Errorf("probes[%d]: neither default nor expect", i)
		}
		for j, pat := range p.Expect {
			for _, s := range []string{pat.From, pat.To} {
				if ns, pod, ok := strings.Cut(s, "/"); !ok || ns == "" || pod == "" {
					return fmt.Errorf("probes[%d].expect[%d]: %q is not ns/pod", i, j, s)
				}
			}
		}
	}
	return nil
}

// ParseProtocol reads TCP (default for ""), UDP or SCTP.
func ParseProtocol(s string) (policy.Protocol, error) {
	switch strings.ToUpper(s) {
	case "", "TCP":
		return policy.ProtoTCP, nil
	case "UDP":
		return policy.ProtoUDP, nil
	case "SCTP":
		return policy.ProtoSCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", s)
}

// Match reports whether "ns/pod" matches a pattern with "*" wildcards.
func Match(pattern, name string) bool {
	pns, ppod, _ := strings.Cut(pattern, "/")
	ns, pod, _ := strings.Cut(name, "/")
	return (pns == "*" || pns == ns) && (ppod == "*" || ppod == pod)
}

// Expected evaluates a probe expectation for one pair: known is false when
// the expectation is partial and says nothing of this pair.
func (p ProbeExpectation) Expected(from, to string) (allowed, known bool) {
	if p.Default != nil {
		allowed, known = *p.Default, true
	}
	for _, pat := range p.Expect {
		if Match(pat.From, from) && Match(pat.To, to) {
			allowed, known = pat.Allowed, true
		}
	}
	return allowed, known
}

// state keeps objects by Ref in first-insertion order.
type state struct {
	order []policy.Ref
	byRef map[policy.Ref]policy.Object
}

func newState() *state { return &state{byRef: map[policy.Ref]policy.Object{}} }

func (s *state) upsert(o policy.Object) {
	if _, ok := s.byRef[o.Ref]; !ok {
		s.order = append(s.order, o.Ref)
	}
	s.byRef[o.Ref] = o
}

func (s *state) delete(r policy.Ref) bool {
	if _, ok := s.byRef[r]; !ok {
		return false
	}
	delete(s.byRef, r)
	for i, x := range s.order {
		if x == r {
			s.order = append(s.order[:i:i], s.order[i+1:]...)
			break
		}
	}
	return true
}

func (s *state) objects() []policy.Object {
	out := make([]policy.Object, 0, len(s.order))
	for _, r := range s.order {
		out = append(out, s.byRef[r])
	}
	return out
}
