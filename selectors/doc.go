// Package selectors is Tabby's label-selector language: parsing, canonical
// form, evaluation, conversion from Kubernetes label selectors, and an
// incremental index of which selectors match which labelled subjects.
//
// In:
//   - selector strings in a superset of Calico's language (Parse, MustParse):
//     k == "v", k != "v", k in {...}, k not in {...}, has(k), !has(k), all(),
//     global(), k contains/starts with/ends with "s", &&, ||, !, parentheses;
//   - metav1.LabelSelector values (FromLabelSelector), validated as the API
//     server does;
//   - label maps (Map, or anything implementing Labels). Policy code adds the
//     reserved keys (tabby:namespace, tabby:kind, ns:*, sa:*; see ast.go)
//     before handing labels in.
//
// Out:
//   - *Selector: an immutable, canonical AST. And/Or are flattened, sorted and
//     deduplicated, double negation is removed, so equivalent spellings share
//     String() and ID(), and Parse(s.String()) reproduces s exactly.
//     Evaluation (Matches) never fails; absent keys make ==, in, has,
//     contains, starts with, ends with false and !=, not in, !has true.
//   - typed errors: *ParseError (column in runes, what was expected, what was
//     found) and *LabelSelectorError (field path inside the selector, reason).
//   - Index: the match relation between selectors and subjects, maintained
//     incrementally, reporting each change exactly once as an Event in a
//     deterministic order (see Index for the cost of each call).
//
// Nothing here does I/O, logs or keeps global state; everything is
// deterministic. Index is not safe for concurrent use.
//
// May import: the standard library and k8s.io/apimachinery only.
package selectors
