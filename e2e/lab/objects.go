package lab

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/policy"
)

// loadObjects decodes files and appends objs. Decoding problems are bad input.
func loadObjects(files []string, objs []policy.Object) ([]policy.Object, error) {
	var out []policy.Object
	if len(files) > 0 {
		o, err := policy.LoadFiles(files...)
		if err != nil {
			return nil, &ConfigError{err}
		}
		out = o
	}
	return append(out, objs...), nil
}

// PodChangeError reports an update that would need the lab to move,
// re-address or re-port a pod, or to give a pod an address of a family its
// underlay lacks, which it cannot do at runtime (adding and removing pods
// it can).
type PodChangeError struct {
	Pod    string
	Reason string
}

func (e *PodChangeError) Error() string {
	return fmt.Sprintf("lab: pod %s: %s (the lab cannot move or re-address a pod or change its ports: remove the pod and add it again, or run lab up again)", e.Pod, e.Reason)
}

// placeObjects returns a copy of objs in which every pod of the plan
// carries its node and addresses. With strict (updates), a pod the lab does
// not have, or whose node, addresses or ports differ from the lab's, is a
// *PodChangeError.
func placeObjects(objs []policy.Object, p *plan, strict bool) ([]policy.Object, error) {
	var eps map[policy.Ref]*policy.Endpoint
	if strict {
		m, errs := policy.Normalize(objs)
		if len(errs) > 0 {
			return nil, &ConfigError{fmt.Errorf("manifests: %v", errs)}
		}
		eps = map[policy.Ref]*policy.Endpoint{}
		for i := range m.Endpoints {
			eps[m.Endpoints[i].Ref] = &m.Endpoints[i]
		}
	}
	out := make([]policy.Object, len(objs))
	for i, o := range objs {
		out[i] = o
		if o.Ref.Kind != policy.KindPod || o.Pod == nil {
			continue
		}
		idx, known := p.byRef[o.Ref]
		if !known {
			if strict && eps[o.Ref] != nil {
				return nil, &PodChangeError{Pod: sim.PodName(o.Ref), Reason: "not one of the lab's pods"}
			}
			continue
		}
		pp := p.pods[idx]
		if ep := eps[o.Ref]; ep != nil {
			if err := samePod(pp, ep); err != nil {
				return nil, err
			}
		}
		pod := o.Pod.DeepCopy()
		pod.Spec.NodeName = NodeName(pp.Node)
		if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
			pod.Status.PodIP = pp.IPs[0].String()
			for _, ip := range pp.IPs {
				pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip.String()})
			}
		}
		out[i].Pod = pod
	}
	return out, nil
}

// samePod checks that an updated pod still fits what the lab built.
func samePod(pp podPlan, ep *policy.Endpoint) error {
	name := pp.name()
	if ep.Node != "" && ep.Node != NodeName(pp.Node) {
		return &PodChangeError{Pod: name, Reason: fmt.Sprintf("spec.nodeName %q, the lab placed it on %s", ep.Node, NodeName(pp.Node))}
	}
	if len(ep.IPs) > 0 && !slices.Equal(ep.IPs, pp.IPs) {
		return &PodChangeError{Pod: name, Reason: fmt.Sprintf("addresses %v, the lab gave it %v", ep.IPs, pp.IPs)}
	}
	if !slices.Equal(portSet(ep.Ports), portSet(pp.Ports)) {
		return &PodChangeError{Pod: name, Reason: fmt.Sprintf("containerPorts %v, the lab serves %v",
			portSet(ep.Ports), portSet(pp.Ports))}
	}
	return nil
}

func portSet(ports []policy.ContainerPort) []string {
	return podPlan{Ports: ports}.servedPorts()
}

// encodeObjects renders objs as one multi-document YAML file, sorted by
// kind, namespace and name: the same objects always give the same bytes,
// whatever order they came in, so "nothing changed" is a byte comparison
// and never a rewrite that the agents' datastore would see as no change.
func encodeObjects(objs []policy.Object) ([]byte, error) {
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b policy.Object) int {
		return cmp.Or(cmp.Compare(a.Ref.Kind, b.Ref.Kind), cmp.Compare(a.Ref.Namespace, b.Ref.Namespace),
			cmp.Compare(a.Ref.Name, b.Ref.Name))
	})
	b, err := policy.Encode(sorted)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return append([]byte("# Written by the Tabby lab: the manifests every lab agent enforces.\n"), b...), nil
}

// podAddr returns the address a probe from src to dst uses, exactly as
// compiler/sim picks it: src's first address and dst's first of that family.
func podAddr(src, dst []netip.Addr) (netip.Addr, bool) {
	if len(src) == 0 {
		return netip.Addr{}, false
	}
	for _, ip := range dst {
		if ip.Is4() == src[0].Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
