package selectors

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// LabelSelectorError reports an invalid metav1.LabelSelector. Field is the
// path inside the selector ("matchLabels[app]", "matchExpressions[1].values");
// callers prefix their own path (e.g. "spec.podSelector.") when reporting.
type LabelSelectorError struct {
	Field  string
	Reason string
}

func (e *LabelSelectorError) Error() string {
	return "invalid label selector: " + e.Field + ": " + e.Reason
}

// FromLabelSelector converts a Kubernetes label selector with Kubernetes
// semantics: matchLabels and matchExpressions are ANDed; matchLabels k: v is
// k == "v"; In is in, NotIn is not in (true when the key is absent), Exists is
// has, DoesNotExist is !has. The empty selector {} is all().
//
// A nil selector returns (nil, nil): "not set" means different things to
// different fields (a NetworkPolicy peer's nil namespaceSelector means "the
// policy's namespace", a nil podSelector in a peer means "all pods"), so the
// caller decides.
//
// Validation follows the API server: keys must be qualified names, values
// valid label values; In/NotIn need at least one value, Exists/DoesNotExist
// none; other operators are rejected. The first problem found (matchLabels in
// key order, then matchExpressions in order) is returned as a
// *LabelSelectorError.
func FromLabelSelector(ls *metav1.LabelSelector) (*Selector, error) {
	if ls == nil {
		return nil, nil
	}
	nodes := make([]Node, 0, len(ls.MatchLabels)+len(ls.MatchExpressions))
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ls.MatchLabels[k]
		fld := "matchLabels[" + k + "]"
		if err := checkKey(fld, k); err != nil {
			return nil, err
		}
		if err := checkValue(fld, v); err != nil {
			return nil, err
		}
		nodes = append(nodes, LeafNode(OpEq, k, v))
	}
	for i, r := range ls.MatchExpressions {
		fld := fmt.Sprintf("matchExpressions[%d]", i)
		if err := checkKey(fld+".key", r.Key); err != nil {
			return nil, err
		}
		var op Op
		switch r.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				return nil, &LabelSelectorError{fld + ".values", "must be specified when `operator` is 'In' or 'NotIn'"}
			}
			for j, v := range r.Values {
				if err := checkValue(fmt.Sprintf("%s.values[%d]", fld, j), v); err != nil {
					return nil, err
				}
			}
			op = OpIn
			if r.Operator == metav1.LabelSelectorOpNotIn {
				op = OpNotIn
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				return nil, &LabelSelectorError{fld + ".values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"}
			}
			op = OpHas
			if r.Operator == metav1.LabelSelectorOpDoesNotExist {
				op = OpNotHas
			}
		default:
			return nil, &LabelSelectorError{fld + ".operator", fmt.Sprintf("not a valid selector operator: %q", r.Operator)}
		}
		nodes = append(nodes, LeafNode(op, r.Key, "", r.Values...))
	}
	return New(AndNode(nodes...)), nil
}

func checkKey(fld, k string) error {
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		return &LabelSelectorError{fld, fmt.Sprintf("invalid label key %q: %s", k, strings.Join(errs, "; "))}
	}
	return nil
}

func checkValue(fld, v string) error {
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return &LabelSelectorError{fld, fmt.Sprintf("invalid label value %q: %s", v, strings.Join(errs, "; "))}
	}
	return nil
}

// WithKeyPrefix returns s with every key it reads rewritten as prefix+key;
// all() and global() are unchanged. Policy code turns a namespace selector
// into one over the ns: keys of endpoints with
// WithKeyPrefix(sel, NamespaceLabelPrefix). prefix should consist of key
// characters ([A-Za-z0-9_./:-]) so the result still parses. A nil s returns nil.
func WithKeyPrefix(s *Selector, prefix string) *Selector {
	if s == nil {
		return nil
	}
	if prefix == "" {
		return s
	}
	return newSelector(prefixKeys(s.root, prefix))
}

// prefixKeys rebuilds n through the canonical constructors: prefixing can
// reorder siblings, so the result must be re-sorted.
func prefixKeys(n Node, prefix string) Node {
	switch c := n.(type) {
	case *Leaf:
		if c.Op == OpAll || c.Op == OpGlobal {
			return c
		}
		return LeafNode(c.Op, prefix+c.Key, c.Value, c.Values...)
	case *AndExpr:
		return AndNode(mapNodes(c.Children, prefix)...)
	case *OrExpr:
		return OrNode(mapNodes(c.Children, prefix)...)
	case *NotExpr:
		return NotNode(prefixKeys(c.Child, prefix))
	}
	return n
}

func mapNodes(ns []Node, prefix string) []Node {
	out := make([]Node, len(ns))
	for i, n := range ns {
		out[i] = prefixKeys(n, prefix)
	}
	return out
}
