package policy

// Tabby's own kinds (tabby.dev/v1alpha1): decoding, and normalisation of Tier
// and NetworkSet/GlobalNetworkSet. Policies are in tabby_policy.go, their
// rules in tabby_rule.go. Every identifier at package level here starts with
// "tabby" so the files of the Kubernetes kinds can grow without collisions.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
	"github.com/tabbynet/tabby/selectors"
)

// The implicit tier every Tabby policy without spec.tier belongs to. It
// exists whether or not a Tier object names it; a Tier object named "default"
// may set its defaultAction but not move it.
const (
	tabbyDefaultTierName  = "default"
	tabbyDefaultTierOrder = 1_000_000
)

// tabbyAPIVersion is the only apiVersion decodeTabby accepts.
var tabbyAPIVersion = tabbyv1.SchemeGroupVersion.String()

// tabbyErrs collects the *FieldErrors of one object, so that a user sees every
// problem of a file at once rather than one per run.
type tabbyErrs struct {
	src  Source
	ref  Ref
	errs []error
}

func (e *tabbyErrs) add(field, reason string) {
	e.errs = append(e.errs, &FieldError{Source: e.src, Object: e.ref, Field: field, Reason: reason})
}

func (e *tabbyErrs) addf(field, format string, args ...any) {
	e.add(field, fmt.Sprintf(format, args...))
}

func (e *tabbyErrs) wrap(field, reason string, err error) {
	e.errs = append(e.errs, &FieldError{Source: e.src, Object: e.ref, Field: field, Reason: reason, Err: err})
}

// err returns nil, the single *FieldError, or an errors.Join of several (in
// field order of discovery, which is deterministic).
func (e *tabbyErrs) err() error {
	switch len(e.errs) {
	case 0:
		return nil
	case 1:
		return e.errs[0]
	}
	return errors.Join(e.errs...)
}

// decodeTabby decodes one tabby.dev/v1alpha1 document of the given kind
// ("Tier", "NetworkPolicy", "GlobalNetworkPolicy", "NetworkSet",
// "GlobalNetworkSet") into the matching field of o (o.Source is set;
// decodeTabby sets o.Ref and the typed field). Unknown fields and a missing
// name are errors. Namespaces follow kubectl, like every other kind: a
// namespaced object without one is in "default", and a cluster-scoped object's
// namespace is ignored.
func decodeTabby(kind string, data []byte, o *Object) error {
	var (
		target     any
		meta       *metav1.ObjectMeta
		tm         *metav1.TypeMeta
		refKind    Kind
		namespaced bool
	)
	switch kind {
	case tabbyv1.KindTier:
		v := &tabbyv1.Tier{}
		target, meta, tm, refKind = v, &v.ObjectMeta, &v.TypeMeta, KindTier
		o.Tier = v
	case tabbyv1.KindNetworkPolicy:
		v := &tabbyv1.NetworkPolicy{}
		target, meta, tm, refKind, namespaced = v, &v.ObjectMeta, &v.TypeMeta, KindTabbyNetworkPolicy, true
		o.TabbyNetworkPolicy = v
	case tabbyv1.KindGlobalNetworkPolicy:
		v := &tabbyv1.GlobalNetworkPolicy{}
		target, meta, tm, refKind = v, &v.ObjectMeta, &v.TypeMeta, KindGlobalNetworkPolicy
		o.GlobalNetworkPolicy = v
	case tabbyv1.KindNetworkSet:
		v := &tabbyv1.NetworkSet{}
		target, meta, tm, refKind, namespaced = v, &v.ObjectMeta, &v.TypeMeta, KindNetworkSet, true
		o.NetworkSet = v
	case tabbyv1.KindGlobalNetworkSet:
		v := &tabbyv1.GlobalNetworkSet{}
		target, meta, tm, refKind = v, &v.ObjectMeta, &v.TypeMeta, KindGlobalNetworkSet
		o.GlobalNetworkSet = v
	default:
		return &FieldError{Source: o.Source, Field: "kind",
			Reason: fmt.Sprintf("unknown kind %q in %s (want Tier, NetworkPolicy, GlobalNetworkPolicy, NetworkSet or GlobalNetworkSet)", kind, tabbyAPIVersion)}
	}

	if err := yaml.UnmarshalStrict(data, target); err != nil {
		o.Tier, o.TabbyNetworkPolicy, o.GlobalNetworkPolicy, o.NetworkSet, o.GlobalNetworkSet = nil, nil, nil, nil, nil
		// Name the object if its metadata alone decodes, so the error says
		// which object of the file is wrong.
		var pm metav1.PartialObjectMetadata
		if yaml.Unmarshal(data, &pm) == nil && pm.Name != "" {
			o.Ref = Ref{Kind: refKind, Namespace: pm.Namespace, Name: pm.Name}
		}
		fe := &FieldError{Source: o.Source, Object: o.Ref, Reason: tabbyDecodeReason(err), Err: err}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			fe.Field = te.Field
		}
		return fe
	}

	if !namespaced {
		meta.Namespace = ""
	} else if meta.Namespace == "" {
		meta.Namespace = DefaultNamespace
	}
	o.Ref = Ref{Kind: refKind, Namespace: meta.Namespace, Name: meta.Name}
	e := tabbyErrs{src: o.Source, ref: o.Ref}
	if tm.APIVersion != tabbyAPIVersion {
		e.addf("apiVersion", "%q is not %s", tm.APIVersion, tabbyAPIVersion)
	}
	if meta.Name == "" {
		e.add("metadata.name", "is required")
	} else {
		// A Tier name appears in chain names, so it is a DNS label like a
		// namespace; the other kinds are ordinary object names.
		check, what := validation.IsDNS1123Subdomain, "a DNS-1123 subdomain"
		if kind == tabbyv1.KindTier {
			check, what = validation.IsDNS1123Label, "a DNS-1123 label"
		}
		if msgs := check(meta.Name); len(msgs) > 0 {
			e.addf("metadata.name", "%q is not %s: %s", meta.Name, what, strings.Join(msgs, "; "))
		}
	}
	if namespaced {
		if msgs := validation.IsDNS1123Label(meta.Namespace); len(msgs) > 0 {
			e.addf("metadata.namespace", "%q is not a DNS-1123 label: %s", meta.Namespace, strings.Join(msgs, "; "))
		}
	}
	return e.err()
}

// tabbyDecodeReason is the innermost message of a decoding error: sigs.k8s.io/
// yaml wraps it in two layers of "error unmarshaling JSON: while decoding
// JSON:" that say nothing to a user.
func tabbyDecodeReason(err error) string {
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			return err.Error()
		}
		err = inner
	}
}

// normalizeTier validates a Tier object. Tier names of the built-in tiers are
// reserved; "default" keeps its fixed order.
func normalizeTier(o Object) (Tier, error) {
	e := tabbyErrs{src: o.Source, ref: o.Ref}
	t := o.Tier
	if t == nil {
		e.add("", "object is not a Tier")
		return Tier{}, e.err()
	}
	out := Tier{Name: t.Name, Ref: o.Ref, DefaultAction: ActionDeny}
	switch t.Name {
	case TierAdmin, TierKubernetes, TierBaseline:
		e.addf("metadata.name", "tier name %q is reserved for a built-in tier", t.Name)
	}
	switch {
	case t.Name == tabbyDefaultTierName:
		out.Order = tabbyDefaultTierOrder
		if t.Spec.Order != nil && *t.Spec.Order != tabbyDefaultTierOrder {
			e.addf("spec.order", "the order of tier %q is fixed at %d", tabbyDefaultTierName, tabbyDefaultTierOrder)
		}
	case t.Spec.Order == nil:
		e.add("spec.order", "is required")
	case math.IsNaN(*t.Spec.Order) || math.IsInf(*t.Spec.Order, 0):
		e.add("spec.order", "must be a finite number")
	default:
		out.Order = *t.Spec.Order
	}
	switch t.Spec.DefaultAction {
	case "", tabbyv1.TierDeny:
	case tabbyv1.TierPass:
		out.DefaultAction = ActionPass
	default:
		e.addf("spec.defaultAction", "%q is not Deny or Pass", t.Spec.DefaultAction)
	}
	if err := e.err(); err != nil {
		return Tier{}, err
	}
	return out, nil
}

// normalizeNetworkSet validates a NetworkSet or GlobalNetworkSet, with c
// giving its namespace's labels for the ns: keys. Labels: the object's own,
// plus tabby:kind ("networkset" / "globalnetworkset"), and for a NetworkSet
// tabby:namespace and its namespace's labels as ns:<key> (always including
// kubernetes.io/metadata.name, even for a namespace c does not know).
func normalizeNetworkSet(o Object, c *Cluster) (NetworkSet, error) {
	e := tabbyErrs{src: o.Source, ref: o.Ref}
	var (
		meta *metav1.ObjectMeta
		spec *tabbyv1.NetworkSetSpec
	)
	switch {
	case o.NetworkSet != nil:
		meta, spec = &o.NetworkSet.ObjectMeta, &o.NetworkSet.Spec
	case o.GlobalNetworkSet != nil:
		meta, spec = &o.GlobalNetworkSet.ObjectMeta, &o.GlobalNetworkSet.Spec
	default:
		e.add("", "object is not a NetworkSet or GlobalNetworkSet")
		return NetworkSet{}, e.err()
	}

	labels := selectors.Map{}
	keys := make([]string, 0, len(meta.Labels))
	for k := range meta.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Validation keeps reserved keys (which contain ':') out of user
		// labels: a GlobalNetworkSet labelled tabby:namespace would otherwise
		// pass for a namespaced one.
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			e.addf("metadata.labels", "key %q: %s", k, strings.Join(msgs, "; "))
			continue
		}
		v := meta.Labels[k]
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			e.addf("metadata.labels", "value %q of %q: %s", v, k, strings.Join(msgs, "; "))
			continue
		}
		labels[k] = v
	}
	if o.NetworkSet != nil {
		ns := meta.Namespace
		labels[selectors.KeyKind] = "networkset"
		labels[selectors.KeyNamespace] = ns
		if c != nil {
			for k, v := range c.Namespaces[ns] {
				labels[selectors.NamespaceLabelPrefix+k] = v
			}
		}
		labels[selectors.NamespaceLabelPrefix+"kubernetes.io/metadata.name"] = ns
	} else {
		labels[selectors.KeyKind] = "globalnetworkset"
	}

	nets := tabbyParseNets(&e, "spec.nets", spec.Nets)
	if err := e.err(); err != nil {
		return NetworkSet{}, err
	}
	return NetworkSet{Ref: o.Ref, Labels: labels, Nets: nets}, nil
}

// tabbyParseNets parses CIDRs or bare addresses (a host prefix), masked, in
// input order. Invalid entries are reported at field[i] and left out.
func tabbyParseNets(e *tabbyErrs, field string, in []string) []netip.Prefix {
	if len(in) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		f := field + "[" + strconv.Itoa(i) + "]"
		p, err := tabbyParseNet(s)
		if err != nil {
			e.wrap(f, err.Error(), err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// errTabbyNet is wrapped by every network parse error.
var errTabbyNet = errors.New("invalid network")

func tabbyParseNet(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%w %q: want a CIDR (10.0.0.0/8) or an address", errTabbyNet, s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w %q: want a CIDR (10.0.0.0/8) or an address", errTabbyNet, s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	// An IPv4-mapped IPv6 prefix never matches an IPv4 packet in nftables'
	// inet family; asking for the IPv4 form avoids a silently dead rule.
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%w %q: IPv4-mapped IPv6 address; write it as IPv4", errTabbyNet, s)
	}
	return p.Masked(), nil
}
