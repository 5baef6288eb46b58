package policy

import (
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tabbynet/tabby/selectors"
)

// Kubernetes label selectors, as the Kubernetes kinds use them. Conversion is
// selectors.FromLabelSelector; validation is done here first so that every
// problem of a selector is reported (FromLabelSelector stops at the first)
// with the API server's paths and wording.

// labelSelector validates and converts ls; nil stays nil.
func labelSelector(ls *metav1.LabelSelector, p *field.Path) (*selectors.Selector, field.ErrorList) {
	if ls == nil {
		return nil, nil
	}
	errs := validateLabels(ls.MatchLabels, p.Child("matchLabels"))
	for i, r := range ls.MatchExpressions {
		errs = append(errs, metav1validation.ValidateLabelSelectorRequirement(r,
			metav1validation.LabelSelectorValidationOptions{}, p.Child("matchExpressions").Index(i))...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	s, err := selectors.FromLabelSelector(ls)
	if err != nil {
		// Not expected after the validation above; report it rather than
		// trust a selector that failed to build.
		fe := &field.Error{Type: field.ErrorTypeInvalid, Field: p.String(), BadValue: field.OmitValueType{}, Detail: err.Error()}
		var lse *selectors.LabelSelectorError
		if errors.As(err, &lse) {
			fe.Field, fe.Detail = p.String()+"."+lse.Field, lse.Reason
		}
		return nil, field.ErrorList{fe}
	}
	return s, nil
}

// namespaceSelector is labelSelector over a namespace's labels, which an
// endpoint carries under the ns: prefix.
func namespaceSelector(ls *metav1.LabelSelector, p *field.Path) (*selectors.Selector, field.ErrorList) {
	s, errs := labelSelector(ls, p)
	return selectors.WithKeyPrefix(s, selectors.NamespaceLabelPrefix), errs
}

// Selectors every Kubernetes-kind peer and subject starts from: only pods
// (never network sets, which carry the ns: keys too), optionally of one
// namespace.
func podsSelector() *selectors.Selector { return selectors.Eq(selectors.KeyKind, kindPodLabel) }

func podsInNamespace(ns string) *selectors.Selector {
	return selectors.And(podsSelector(), selectors.Eq(selectors.KeyNamespace, ns))
}

// kindPodLabel is the tabby:kind value of a pod endpoint.
const kindPodLabel = "pod"
