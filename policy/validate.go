package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation helpers shared by the normalisers. Errors are collected as
// apimachinery field.ErrorList so that paths and wording match what the API
// server reports for the same object, and are converted to *FieldError once,
// at the end, by objectErrors.

// objectErrors turns list into *FieldErrors about o, joined; nil if empty.
// Each FieldError wraps the *field.Error so callers can inspect its Type;
// those about features Tabby lacks also wrap ErrUnsupported.
func objectErrors(o Object, list field.ErrorList) error {
	if len(list) == 0 {
		return nil
	}
	errs := make([]error, 0, len(list))
	for _, e := range list {
		fe := &FieldError{Source: o.Source, Object: o.Ref, Field: e.Field, Reason: e.ErrorBody(), Err: e}
		if e.Origin == originUnsupported {
			fe.Reason, fe.Err = e.Detail, fmt.Errorf("%w: %w", ErrUnsupported, e)
		}
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// asFieldError wraps err as a *FieldError about o unless it already is one.
func asFieldError(o Object, err error) *FieldError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return &FieldError{Source: o.Source, Object: o.Ref, Reason: err.Error(), Err: err}
}

// flattenErrors splits joined errors (errors.Join, or any Unwrap() []error)
// into their members, recursively, so that every reported entry is about one
// field. Members that are not *FieldError are wrapped as one about o.
func flattenErrors(o Object, err error, out []error) []error {
	if err == nil {
		return out
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = flattenErrors(o, e, out)
		}
		return out
	}
	return append(out, asFieldError(o, err))
}

// validateLabels is metav1validation.ValidateLabels with a deterministic
// order of errors (the upstream one ranges over the map).
func validateLabels(labels map[string]string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(labels) {
		errs = append(errs, metav1validation.ValidateLabelName(k, p)...)
		for _, msg := range validation.IsValidLabelValue(labels[k]) {
			errs = append(errs, field.Invalid(p, labels[k], msg))
		}
	}
	return errs
}

// validateMeta checks the parts of metadata decoding does not: labels and
// annotation keys. Name and namespace are checked when decoding, because the
// object's identity (Ref) depends on them.
func validateMeta(m *metav1.ObjectMeta) field.ErrorList {
	p := field.NewPath("metadata")
	errs := validateLabels(m.Labels, p.Child("labels"))
	for _, k := range sortedKeys(m.Annotations) {
		// Annotation keys are qualified names, compared case-insensitively.
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, field.Invalid(p.Child("annotations"), k, msg))
		}
	}
	return errs
}

// validateName checks an object name the way the API server does for the
// kind: namespaces are DNS labels, everything else DNS subdomains.
func validateName(kind Kind, name string, p *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "name is required")}
	}
	check := validation.IsDNS1123Subdomain
	if kind == KindNamespace {
		check = validation.IsDNS1123Label
	}
	var errs field.ErrorList
	for _, msg := range check(name) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

// parseCIDR parses a CIDR the way the Kubernetes legacy validation accepts
// it, minus the ambiguous forms: bits set beyond the prefix length are
// accepted and masked off (net.ParseCIDR did that, and the API server still
// accepts it), while leading zeros (octal to some parsers) and IPv4-mapped
// IPv6 prefixes (which no packet would ever match) are rejected.
func parseCIDR(s string, p *field.Path) (netip.Prefix, *field.Error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, field.Invalid(p, s, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, field.Invalid(p, s, "must not have an IPv4-mapped IPv6 address")
	}
	return pfx.Masked(), nil
}

// parseIP parses an endpoint address. Zones are rejected (a pod address has
// none); an IPv4-mapped IPv6 address is the IPv4 address it maps.
func parseIP(s string, p *field.Path) (netip.Addr, *field.Error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, field.Invalid(p, s, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
	}
	a = a.Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}, field.Invalid(p, s, "must not be the unspecified address")
	}
	return a, nil
}

// validPort reports a port number error for p, or nil.
func validPort(port int32, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidPortNum(int(port)) {
		errs = append(errs, field.Invalid(p, port, msg))
	}
	return errs
}

// validPortName reports an IANA_SVC_NAME error for p, or nil.
func validPortName(name string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidPortName(name) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// protocolName maps a Kubernetes protocol name to a Protocol. The empty name
// is the caller's to default.
func protocolName(name string) (Protocol, error) {
	switch name {
	case "TCP":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "SCTP":
		return ProtoSCTP, nil
	}
	return ProtoAny, fmt.Errorf("unsupported protocol %q", name)
}

// sortPrefixes returns ps sorted (by address, then length) and deduplicated.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	ps = slices.Clone(ps)
	slices.SortFunc(ps, comparePrefix)
	return slices.Compact(ps)
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
