package policy

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tabbynet/tabby/selectors"
)

// defaultServiceAccount is the service account of a pod that names none.
const defaultServiceAccount = "default"

// normalizeNamespace validates a Namespace and returns its labels with the
// implied kubernetes.io/metadata.name, which the API server always sets to the
// name (overwriting any other value).
func normalizeNamespace(o Object) (map[string]string, error) {
	ns := o.Namespace
	if errs := validateMeta(&ns.ObjectMeta); len(errs) > 0 {
		return nil, objectErrors(o, errs)
	}
	labels := make(map[string]string, len(ns.Labels)+1)
	for k, v := range ns.Labels {
		labels[k] = v
	}
	labels[corev1.LabelMetadataName] = ns.Name
	return labels, nil
}

// normalizeServiceAccount validates a ServiceAccount and returns its labels.
func normalizeServiceAccount(o Object) (map[string]string, error) {
	sa := o.ServiceAccount
	if errs := validateMeta(&sa.ObjectMeta); len(errs) > 0 {
		return nil, objectErrors(o, errs)
	}
	return sa.Labels, nil
}

// impliedNamespaceLabels are the labels of a namespace no Namespace object
// declares: only the one the API server would set.
func impliedNamespaceLabels(name string) map[string]string {
	return map[string]string{corev1.LabelMetadataName: name}
}

// normalizePod turns a Pod into an Endpoint. ok is false, without error, for a
// pod policy does not apply to: host-networked (it has the node's addresses)
// or terminated (Succeeded or Failed: its addresses may be reused).
// serviceAccounts maps "namespace/name" to the labels of existing ServiceAccounts.
func normalizePod(o Object, c *Cluster, serviceAccounts map[string]map[string]string) (Endpoint, bool, error) {
	pod := o.Pod
	errs := validateMeta(&pod.ObjectMeta)
	spec := field.NewPath("spec")

	sa := pod.Spec.ServiceAccountName
	saPath := spec.Child("serviceAccountName")
	if sa == "" {
		// The v1 conversion fills serviceAccountName from the deprecated field.
		sa, saPath = pod.Spec.DeprecatedServiceAccount, spec.Child("serviceAccount")
	}
	if sa == "" {
		sa = defaultServiceAccount
	} else {
		errs = append(errs, validateName(KindServiceAccount, sa, saPath)...)
	}
	if pod.Spec.NodeName != "" {
		errs = append(errs, validateName(KindPod, pod.Spec.NodeName, spec.Child("nodeName"))...)
	}
	ports, e := podPorts(&pod.Spec, spec)
	errs = append(errs, e...)
	ips, e := podIPs(&pod.Status, field.NewPath("status"))
	errs = append(errs, e...)
	if len(errs) > 0 {
		return Endpoint{}, false, objectErrors(o, errs)
	}
	if pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return Endpoint{}, false, nil
	}

	labels := selectors.Map{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	nsLabels := c.Namespaces[pod.Namespace]
	if nsLabels == nil {
		nsLabels = impliedNamespaceLabels(pod.Namespace)
	}
	for k, v := range nsLabels {
		labels[selectors.NamespaceLabelPrefix+k] = v
	}
	for k, v := range serviceAccounts[pod.Namespace+"/"+sa] {
		labels[selectors.ServiceAccountLabelPrefix+k] = v
	}
	labels[selectors.KeyKind] = kindPodLabel
	labels[selectors.KeyNamespace] = pod.Namespace
	labels[selectors.KeyServiceAccount] = sa
	return Endpoint{Ref: o.Ref, Labels: labels, IPs: ips, Ports: ports, Node: pod.Spec.NodeName}, true, nil
}

// podPorts validates the containerPorts of every container and returns those
// of the containers that run alongside the pod's lifetime: regular containers
// and sidecars (init containers with restartPolicy Always). Plain init
// containers are validated but have exited by the time traffic flows.
func podPorts(spec *corev1.PodSpec, p *field.Path) ([]ContainerPort, field.ErrorList) {
	var out []ContainerPort
	var errs field.ErrorList
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		ports, e := containerPorts(c.Ports, p.Child("initContainers").Index(i).Child("ports"))
		errs = append(errs, e...)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			out = append(out, ports...)
		}
	}
	for i := range spec.Containers {
		ports, e := containerPorts(spec.Containers[i].Ports, p.Child("containers").Index(i).Child("ports"))
		errs = append(errs, e...)
		out = append(out, ports...)
	}
	slices.SortFunc(out, func(a, b ContainerPort) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
	})
	return slices.Compact(out), errs
}

// containerPorts validates one container's ports as the API server does.
func containerPorts(ports []corev1.ContainerPort, p *field.Path) ([]ContainerPort, field.ErrorList) {
	var out []ContainerPort
	var errs field.ErrorList
	names := map[string]bool{}
	for i, cp := range ports {
		ip := p.Index(i)
		var e field.ErrorList
		if cp.Name != "" {
			e = append(e, validPortName(cp.Name, ip.Child("name"))...)
			if names[cp.Name] {
				e = append(e, field.Duplicate(ip.Child("name"), cp.Name))
			}
			names[cp.Name] = true
		}
		if cp.ContainerPort == 0 {
			e = append(e, field.Required(ip.Child("containerPort"), ""))
		} else {
			e = append(e, validPort(cp.ContainerPort, ip.Child("containerPort"))...)
		}
		if cp.HostPort != 0 {
			e = append(e, validPort(cp.HostPort, ip.Child("hostPort"))...)
		}
		proto := ProtoTCP
		if cp.Protocol != "" {
			var err error
			if proto, err = protocolName(string(cp.Protocol)); err != nil {
				e = append(e, field.NotSupported(ip.Child("protocol"), cp.Protocol, supportedProtocols))
			}
		}
		if len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		out = append(out, ContainerPort{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: proto})
	}
	return out, errs
}

// supportedProtocols are the protocol names of the Kubernetes API, in the
// order the API server lists them.
var supportedProtocols = []string{"SCTP", "TCP", "UDP"}

// podIPs returns a pod's addresses, primary first. Like the v1 conversion,
// status.podIP is authoritative when it disagrees with status.podIPs[0]; a
// pod has at most one address per family.
func podIPs(st *corev1.PodStatus, p *field.Path) ([]netip.Addr, field.ErrorList) {
	type entry struct {
		s    string
		path *field.Path
	}
	var list []entry
	for i, pip := range st.PodIPs {
		list = append(list, entry{pip.IP, p.Child("podIPs").Index(i).Child("ip")})
	}
	if st.PodIP != "" && (len(st.PodIPs) == 0 || st.PodIPs[0].IP != st.PodIP) {
		list = []entry{{st.PodIP, p.Child("podIP")}}
	}
	var out []netip.Addr
	var errs field.ErrorList
	for _, e := range list {
		a, err := parseIP(e.s, e.path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(errs) == 0 && (len(out) > 2 || (len(out) == 2 && out[0].Is4() == out[1].Is4())) {
		errs = append(errs, field.Invalid(p.Child("podIPs"), st.PodIPs, "may specify no more than one IP for each IP family"))
	}
	return out, errs
}
