package lab

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/tabbynet/tabby/policy"
	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// fieldManager owns what the lab writes (server-side apply); the kubelet's
// part, pod status, has its own manager, as a real kubelet's would.
const (
	fieldManager        = "tabby-lab"
	kubeletFieldManager = "tabby-lab-kubelet"
)

// PauseImage fills in a container image where a manifest has none: the API
// server requires one, the lab runs no containers, and package policy
// ignores images.
const PauseImage = "registry.k8s.io/pause:3.10"

// kindInfo is where a policy kind lives in the API and when it is written:
// lower stages first on create and update, last on delete.
type kindInfo struct {
	gvr        schema.GroupVersionResource
	namespaced bool
	stage      int
}

var tabbyGV = tabbyv1.SchemeGroupVersion

var apiKinds = map[policy.Kind]kindInfo{
	policy.KindNamespace:            {schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, false, 0},
	policy.KindServiceAccount:       {schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, true, 1},
	policy.KindTier:                 {tabbyGV.WithResource("tiers"), false, 2},
	policy.KindNetworkSet:           {tabbyGV.WithResource("networksets"), true, 3},
	policy.KindGlobalNetworkSet:     {tabbyGV.WithResource("globalnetworksets"), false, 3},
	policy.KindK8sNetworkPolicy:     {schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}, true, 4},
	policy.KindClusterNetworkPolicy: {schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1alpha2", Resource: "clusternetworkpolicies"}, false, 4},
	policy.KindTabbyNetworkPolicy:   {tabbyGV.WithResource("networkpolicies"), true, 4},
	policy.KindGlobalNetworkPolicy:  {tabbyGV.WithResource("globalnetworkpolicies"), false, 4},
	policy.KindPod:                  {schema.GroupVersionResource{Version: "v1", Resource: "pods"}, true, 5},
}

const podStage = 5

// systemNamespaces exist in every cluster (or hold the agents' identity):
// the lab never deletes them.
var systemNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease", AgentNamespace}

// apiObject is one object as the lab writes it to the API server.
type apiObject struct {
	ref  policy.Ref
	info kindInfo
	body map[string]any // server-side apply body: no status
	enc  []byte         // body as JSON: what "changed" compares
	// status is a pod's, as the kubelet writes it (nil for other kinds).
	status    map[string]any
	statusEnc []byte
}

// apiObjects turns placed objects into what the API server gets, keyed by
// Ref. Namespaces that objects live in but that no Namespace object
// declares are added bare (the API server refuses objects in a missing
// namespace; such a namespace then has only its implied labels, as in
// package policy's model).
func (l *Lab) apiObjects(objs []policy.Object) (map[policy.Ref]*apiObject, error) {
	out := map[policy.Ref]*apiObject{}
	referenced := map[string]bool{}
	for _, o := range objs {
		info, ok := apiKinds[o.Ref.Kind]
		if !ok {
			return nil, fmt.Errorf("lab: %s: kind not served through the API", o.Ref)
		}
		ao, err := l.apiObject(o, info)
		if err != nil {
			return nil, err
		}
		out[o.Ref] = ao
		if info.namespaced {
			referenced[o.Ref.Namespace] = true
		}
	}
	for ns := range referenced {
		ref := policy.Ref{Kind: policy.KindNamespace, Name: ns}
		if _, declared := out[ref]; declared {
			continue
		}
		body := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}
		enc, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		out[ref] = &apiObject{ref: ref, info: apiKinds[policy.KindNamespace], body: body, enc: enc}
	}
	return out, nil
}

func (l *Lab) apiObject(o policy.Object, info kindInfo) (*apiObject, error) {
	typed, err := o.Typed()
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	// Through JSON rather than the unstructured converter: Tabby's types
	// have custom JSON (int-or-string ports and protocols).
	raw, err := json.Marshal(typed)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", o.Ref, err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", o.Ref, err)
	}
	ao := &apiObject{ref: o.Ref, info: info, body: body}
	if md, ok := body["metadata"].(map[string]any); ok {
		// What a server set, or a typed zero value, is not the lab's to apply.
		for _, k := range []string{"creationTimestamp", "resourceVersion", "uid", "generation", "managedFields", "selfLink", "deletionTimestamp"} {
			delete(md, k)
		}
		if info.namespaced {
			md["namespace"] = o.Ref.Namespace
		}
	}
	status, _ := body["status"].(map[string]any)
	delete(body, "status")
	if o.Ref.Kind == policy.KindPod {
		fillContainers(body)
		ao.status = l.podStatus(o, status)
		if ao.statusEnc, err = json.Marshal(ao.status); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", o.Ref, err)
		}
	}
	if ao.enc, err = json.Marshal(body); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", o.Ref, err)
	}
	return ao, nil
}

// fillContainers gives every container an image (and a name) if it has
// none: the API server requires both.
func fillContainers(body map[string]any) {
	spec, _ := body["spec"].(map[string]any)
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		for i, c := range cs {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			if s, _ := m["image"].(string); s == "" {
				m["image"] = PauseImage
			}
			if s, _ := m["name"].(string); s == "" {
				m["name"] = fmt.Sprintf("c%d", i)
			}
		}
	}
}

// podStatus is what the lab, as kubelet, reports for a pod: the status the
// placed object carries (its addresses), Running unless it says otherwise,
// its node's underlay address as hostIP and, unless the object says
// otherwise, ready containers (kubectl get pods shows 1/1 Running). Nothing
// in it depends on the time, so the same pod gives the same status.
func (l *Lab) podStatus(o policy.Object, status map[string]any) map[string]any {
	if status == nil {
		status = map[string]any{}
	}
	if s, _ := status["phase"].(string); s == "" {
		status["phase"] = "Running"
	}
	if status["phase"] == "Running" && status["conditions"] == nil {
		var conds []any
		for _, t := range []string{"PodScheduled", "Initialized", "ContainersReady", "Ready"} {
			conds = append(conds, map[string]any{"type": t, "status": "True"})
		}
		status["conditions"] = conds
	}
	if status["phase"] == "Running" && status["containerStatuses"] == nil {
		var cs []any
		for i, c := range o.Pod.Spec.Containers {
			name, image := c.Name, c.Image
			if name == "" {
				name = fmt.Sprintf("c%d", i)
			}
			if image == "" {
				image = PauseImage
			}
			cs = append(cs, map[string]any{"name": name, "image": image, "imageID": "", "ready": true,
				"started": true, "restartCount": 0, "state": map[string]any{"running": map[string]any{}}})
		}
		status["containerStatuses"] = cs
	}
	if nd, ok := l.node(o.Pod.Spec.NodeName); ok && status["hostIP"] == nil {
		if ip, ok := familyAddr(nd.UnderlayIPs, true); ok {
			status["hostIP"] = ip.String()
			status["hostIPs"] = []any{map[string]any{"ip": ip.String()}}
		}
	}
	return status
}
