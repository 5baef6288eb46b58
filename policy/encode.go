package policy

import (
	"bytes"
	"fmt"

	"sigs.k8s.io/yaml"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// Typed returns a copy of the object's typed value with apiVersion and kind
// set (an object built in code may lack them), ready to marshal.
func (o Object) Typed() (any, error) {
	switch {
	case o.Namespace != nil:
		v := o.Namespace.DeepCopy()
		v.APIVersion, v.Kind = apiCoreV1, "Namespace"
		return v, nil
	case o.Pod != nil:
		v := o.Pod.DeepCopy()
		v.APIVersion, v.Kind = apiCoreV1, "Pod"
		return v, nil
	case o.ServiceAccount != nil:
		v := o.ServiceAccount.DeepCopy()
		v.APIVersion, v.Kind = apiCoreV1, "ServiceAccount"
		return v, nil
	case o.NetworkPolicy != nil:
		v := o.NetworkPolicy.DeepCopy()
		v.APIVersion, v.Kind = apiNetworkingV1, "NetworkPolicy"
		return v, nil
	case o.ClusterNetworkPolicy != nil:
		v := o.ClusterNetworkPolicy.DeepCopy()
		v.APIVersion, v.Kind = apiCNPV1alpha2, "ClusterNetworkPolicy"
		return v, nil
	case o.Tier != nil:
		v := o.Tier.DeepCopy()
		v.APIVersion, v.Kind = apiTabbyV1, tabbyv1.KindTier
		return v, nil
	case o.TabbyNetworkPolicy != nil:
		v := o.TabbyNetworkPolicy.DeepCopy()
		v.APIVersion, v.Kind = apiTabbyV1, tabbyv1.KindNetworkPolicy
		return v, nil
	case o.GlobalNetworkPolicy != nil:
		v := o.GlobalNetworkPolicy.DeepCopy()
		v.APIVersion, v.Kind = apiTabbyV1, tabbyv1.KindGlobalNetworkPolicy
		return v, nil
	case o.NetworkSet != nil:
		v := o.NetworkSet.DeepCopy()
		v.APIVersion, v.Kind = apiTabbyV1, tabbyv1.KindNetworkSet
		return v, nil
	case o.GlobalNetworkSet != nil:
		v := o.GlobalNetworkSet.DeepCopy()
		v.APIVersion, v.Kind = apiTabbyV1, tabbyv1.KindGlobalNetworkSet
		return v, nil
	}
	return nil, fmt.Errorf("encode %s: the object has no typed value", o.Ref)
}

// Encode renders objects as one multi-document YAML file, in the order
// given (sort first for stable bytes): the inverse of Decode, so
// Decode(Encode(objs)) yields the same objects.
func Encode(objs []Object) ([]byte, error) {
	var buf bytes.Buffer
	for _, o := range objs {
		v, err := o.Typed()
		if err != nil {
			return nil, err
		}
		b, err := yaml.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", o.Ref, err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}
