package policy

// Seam between the Kubernetes kinds and Tabby's kinds. The Tabby-kinds helper
// replaces these bodies; the signatures are the contract.

import "errors"

var errTabbyPending = errors.New("tabby.dev kinds are not implemented yet")

// decodeTabby decodes one tabby.dev/v1alpha1 document of the given kind into
// the matching field of o (o.Source is set; decodeTabby sets o.Ref and the
// typed field). Unknown fields are errors.
func decodeTabby(kind string, data []byte, o *Object) error { return errTabbyPending }

// normalizeTier validates a Tier object.
func normalizeTier(o Object) (Tier, error) { return Tier{}, errTabbyPending }

// normalizeTabbyPolicy validates and normalises a tabby.dev NetworkPolicy or
// GlobalNetworkPolicy. Errors are *FieldError (errors.Join of several allowed).
func normalizeTabbyPolicy(o Object, c *Cluster) (Policy, error) { return Policy{}, errTabbyPending }

// normalizeNetworkSet validates a NetworkSet or GlobalNetworkSet, with c
// giving its namespace's labels for the ns: keys.
func normalizeNetworkSet(o Object, c *Cluster) (NetworkSet, error) {
	return NetworkSet{}, errTabbyPending
}
