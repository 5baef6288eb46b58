package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/e2e/controlplane"
	"github.com/tabbynet/tabby/networking"
	"github.com/tabbynet/tabby/policy"
)

// Kubernetes mode: where the control plane is and who the agents are.
const (
	// APIServerPort is kube-apiserver's port on the control-plane
	// namespace's underlay address.
	APIServerPort = 6443
	// APIServerReplicaPort is where StartAPIServerReplica runs a second
	// kube-apiserver, on the same address.
	APIServerReplicaPort = 6444
	// AgentNamespace and AgentServiceAccount are deploy/'s identity of the
	// agent; AgentUser is that service account's user name, which the
	// agents' client certificates carry.
	AgentNamespace      = "tabby-system"
	AgentServiceAccount = "tabby-agent"
	AgentUser           = "system:serviceaccount:" + AgentNamespace + ":" + AgentServiceAccount
	// DefaultDeploy is the manifest whose CRDs and agent RBAC a
	// Kubernetes-mode lab applies, relative to the repository root.
	DefaultDeploy = "deploy/tabby.yaml"

	kubeDir             = "kube" // under StateDir: the control plane's Dir
	adminKubeconfigFile = "admin.kubeconfig"
	cpPort              = "cp" // the underlay's end of the control plane's veth
)

// AgentGroups are the groups of a service account's token, which the agents'
// certificates carry too, so that RBAC sees them exactly as in a cluster.
var AgentGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + AgentNamespace, "system:authenticated"}

// ErrNotKubernetes is returned by Kubernetes-mode operations on a lab built
// without Config.Kubernetes.
var ErrNotKubernetes = errors.New("lab: not a Kubernetes-mode lab (lab up --kubernetes)")

func cpNetnsName(name string) string { return name + "-cp" }

// cpAddr is the control plane's underlay address: next to the bridge's,
// below the nodes'.
func cpAddr() netip.Addr { return bridgeAddr(underlayV4).Next() }

// KubeState is the Kubernetes part of a lab's record.
type KubeState struct {
	// Netns is the control plane's namespace, on the underlay at IP.
	Netns string     `json:"netns"`
	IP    netip.Addr `json:"ip"`
	// Dir is the control plane's directory: certificates, kubeconfigs,
	// etcd's data and controlplane.json (etcd's and kube-apiserver's PIDs).
	Dir string `json:"dir"`
	// URL is the API server as the agents reach it over the underlay.
	URL string `json:"url"`
	// Kubeconfig is the admin's (system:masters), for kubectl on the host:
	// its server is the forwarder, ForwardAddr on the root namespace's
	// loopback, which relays into the control plane's namespace.
	Kubeconfig  string `json:"kubeconfig"`
	ForwardAddr string `json:"forwardAddr,omitempty"`
	Forwarder   *Proc  `json:"forwarder,omitempty"`
	// Deploy is the manifest whose CRDs and agent RBAC were applied.
	Deploy string `json:"deploy"`
}

// kubeRuntime is a Kubernetes-mode lab's connection to its control plane.
type kubeRuntime struct {
	cp     *controlplane.ControlPlane
	writer *kubeWriter
	// dyn is the primary apiserver's client; writer.dyn is the replica's
	// while the primary is stopped and a replica runs.
	dyn dynamic.Interface
	// replica is the extra apiserver StartAPIServerReplica started.
	replica    *controlplane.Replica
	replicaDyn dynamic.Interface
}

func newKubeRuntime(cp *controlplane.ControlPlane) (*kubeRuntime, error) {
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return &kubeRuntime{cp: cp, writer: newKubeWriter(dyn), dyn: dyn}, nil
}

// openKube connects to a recorded lab's control plane (no network I/O).
func openKube(st *State) (*kubeRuntime, error) {
	cp, err := controlplane.Open(st.Kubernetes.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return newKubeRuntime(cp)
}

// findDeploy locates DefaultDeploy above the working directory, then above
// the tabbyctl binary (bin/ of a checkout).
func findDeploy(tabbyctl string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if tabbyctl != "" {
		starts = append(starts, filepath.Dir(tabbyctl))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, DefaultDeploy)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", configErr("Kubernetes mode: %s not found above %s (run from the repository, or pass --deploy FILE)",
		DefaultDeploy, strings.Join(starts, " or "))
}

// buildControlPlane creates the control plane's namespace on the underlay,
// runs etcd and kube-apiserver in it (detached), starts the loopback
// forwarder for the host's kubectl, applies deploy's CRDs and agent RBAC,
// registers the nodes and writes each agent's kubeconfig.
func (l *Lab) buildControlPlane(ctx context.Context) error {
	ks := l.st.Kubernetes
	if err := l.buildCPNetns(); err != nil {
		return err
	}
	if err := os.RemoveAll(ks.Dir); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.MkdirAll(ks.Dir, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	cp, err := controlplane.Launch(ctx, controlplane.Options{
		Dir: ks.Dir, LogDir: filepath.Join(l.st.StateDir, logsDir), Netns: netnsPath(ks.Netns),
		BindAddress: ks.IP, Port: APIServerPort, Detached: true,
		// A cold apiserver on a loaded 2-core machine takes far longer
		// than an agent's first sync.
		ReadyTimeout: max(l.cfg.ReadyTimeout, 90*time.Second),
	})
	if err != nil {
		return fmt.Errorf("lab: control plane: %w", err)
	}
	if l.kube, err = newKubeRuntime(cp); err != nil {
		return err
	}
	if err := l.startForwarder(); err != nil {
		return err
	}
	if err := l.applyDeploy(ctx); err != nil {
		return err
	}
	for i := range l.st.Nodes {
		nd := &l.st.Nodes[i]
		if err := l.registerNode(ctx, *nd); err != nil {
			return err
		}
		nd.Kubeconfig = filepath.Join(ks.Dir, "agent-"+nd.Name+".kubeconfig")
		if err := cp.WriteKubeconfig(nd.Kubeconfig, ks.URL, AgentUser, AgentGroups...); err != nil {
			return fmt.Errorf("lab: %s: %w", nd.Name, err)
		}
	}
	return l.save()
}

// buildCPNetns creates the control plane's namespace, joined to the
// underlay bridge like a node (no forwarding, no default route: it only
// answers the nodes on the underlay's subnet).
func (l *Lab) buildCPNetns() error {
	ks := l.st.Kubernetes
	return l.joinUnderlay(ks.Netns, cpPort, "control-plane namespace", false,
		func(_ *networking.Netns, h *netlink.Handle, up netlink.Link, fail func(error) error) error {
			if err := h.LinkSetUp(up); err != nil {
				return fail(err)
			}
			if err := addAddr(h, up, ks.IP, underlayV4.Bits()); err != nil {
				return fail(err)
			}
			return nil
		})
}

// ForwardReady prefixes the line `lab forward` writes on its readiness pipe,
// followed by the address it listens on.
const ForwardReady = "ready "

// startForwarder starts `tabbyctl lab forward` in the root namespace on a
// free loopback port, relaying to the API server in the control plane's
// namespace, and writes the admin kubeconfig that points at it.
func (l *Lab) startForwarder() error {
	ks := l.st.Kubernetes
	log := filepath.Join(l.st.StateDir, logsDir, "forward.log")
	args := []string{l.cfg.Tabbyctl, "lab", "forward", "--listen", "127.0.0.1:0",
		"--netns", netnsPath(ks.Netns), "--to", netipAddrPort(ks.IP, APIServerPort), "--ready-fd", "3"}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer r.Close()
	proc, run, err := l.startDetached(args, log, "", w)
	w.Close()
	if err != nil {
		return err
	}
	ks.Forwarder = proc
	l.procs[proc.PID] = run
	if err := l.save(); err != nil {
		return err
	}
	line, err := waitReadyLine(r, l.cfg.ReadyTimeout)
	addr, ok := strings.CutPrefix(line, ForwardReady)
	switch {
	case err != nil:
		return &ProcessError{What: "API forwarder", Log: log, Err: fmt.Errorf("not ready: %w", err)}
	case !ok:
		return &ProcessError{What: "API forwarder", Log: log, Err: errors.New(line)}
	}
	ks.ForwardAddr = addr
	ks.Kubeconfig = filepath.Join(ks.Dir, adminKubeconfigFile)
	if err := l.kube.cp.WriteKubeconfig(ks.Kubeconfig, "https://"+addr, controlplane.AdminUser, "system:masters"); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return l.save()
}

func netipAddrPort(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// deployKinds are what the lab takes from the deploy manifest, in the
// order applied: the agents' namespace, CRDs and RBAC, not the DaemonSet
// (the lab runs the agents itself) or anything else.
var deployKinds = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{"Namespace", schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}},
	{"CustomResourceDefinition", schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}},
	{"ServiceAccount", schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}},
	{"ClusterRole", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}},
	{"ClusterRoleBinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}},
}

// applyDeploy applies deploy's CRDs and agent RBAC and waits until every
// CRD is established (served).
func (l *Lab) applyDeploy(ctx context.Context) error {
	path := l.st.Kubernetes.Deploy
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("lab: deploy manifest: %w", err)
	}
	byKind := map[string][]*unstructured.Unstructured{}
	for i, doc := range policy.SplitDocuments(data) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return fmt.Errorf("lab: %s document %d: %w", path, i+1, err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		byKind[u.GetKind()] = append(byKind[u.GetKind()], u)
	}
	for _, k := range []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"} {
		if len(byKind[k]) == 0 {
			return fmt.Errorf("lab: %s has no %s: not Tabby's deploy manifest?", path, k)
		}
	}
	dyn := l.kube.writer.dyn
	for _, dk := range deployKinds {
		for _, u := range byKind[dk.kind] {
			r := dyn.Resource(dk.gvr)
			var ri dynamic.ResourceInterface = r
			if ns := u.GetNamespace(); ns != "" {
				ri = r.Namespace(ns)
			}
			if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				return fmt.Errorf("lab: apply %s %s from %s: %w", dk.kind, u.GetName(), path, err)
			}
		}
	}
	var names []string
	for _, u := range byKind["CustomResourceDefinition"] {
		names = append(names, u.GetName())
	}
	return l.waitEstablished(ctx, names)
}

// waitEstablished polls the CRDs until each has condition Established.
func (l *Lab) waitEstablished(ctx context.Context, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	crds := l.kube.writer.dyn.Resource(deployKinds[1].gvr)
	for _, name := range names {
		for {
			u, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err == nil && crdEstablished(u) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("lab: CRD %s not established: %w", name, errors.Join(err, ctx.Err()))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func crdEstablished(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// registerNode creates the Node object of nd, as a kubelet registers
// itself: its underlay addresses as InternalIP, its pod CIDR, Ready.
func (l *Lab) registerNode(ctx context.Context, nd NodeState) error {
	cs := l.kube.cp.Client
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nd.Name, Labels: map[string]string{
			"kubernetes.io/hostname": nd.Name, "kubernetes.io/os": "linux"}},
		Spec: corev1.NodeSpec{PodCIDR: nd.PodCIDR.String(), PodCIDRs: []string{nd.PodCIDR.String()}},
	}
	created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{FieldManager: kubeletFieldManager})
	if apierrors.IsAlreadyExists(err) {
		created, err = cs.CoreV1().Nodes().Get(ctx, nd.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("lab: register node %s: %w", nd.Name, err)
	}
	now := metav1.Now()
	created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: nd.Name}}
	for _, ip := range nd.UnderlayIPs {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "TabbyLab", Message: "a Tabby lab node", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{FieldManager: kubeletFieldManager}); err != nil {
		return fmt.Errorf("lab: node %s status: %w", nd.Name, err)
	}
	return nil
}

// kubeCreate writes a new lab's objects (Up): everything but the pods'
// status, which the kubelet writes once the pods are built (kubeStatuses).
func (l *Lab) kubeCreate(ctx context.Context) error {
	objs, err := l.apiObjects(l.objs)
	if err != nil {
		return err
	}
	cur, err := l.kube.writer.list(ctx)
	if err != nil {
		return err
	}
	for _, s := range byStage(slices.Collect(maps.Values(objs))) {
		if err := inParallel(s, func(ao *apiObject) error { return l.kube.writer.apply(ctx, cur, ao) }); err != nil {
			return err
		}
	}
	return nil
}

// kubeStatuses writes every pod's status (Up, after the pods are built).
func (l *Lab) kubeStatuses(ctx context.Context) error {
	objs, err := l.apiObjects(l.objs)
	if err != nil {
		return err
	}
	cur, err := l.kube.writer.list(ctx)
	if err != nil {
		return err
	}
	var pods []*apiObject
	for _, ao := range objs {
		if ao.ref.Kind == policy.KindPod {
			pods = append(pods, ao)
		}
	}
	return inParallel(pods, func(ao *apiObject) error { return l.kube.writer.applyStatus(ctx, cur, ao) })
}

// stopKube stops a recorded lab's control plane and removes its directory
// (certificates, kubeconfigs, etcd's data). Logs stay.
func stopKube(ks *KubeState) []error {
	var errs []error
	if ks.Dir == "" {
		return nil
	}
	if _, err := os.Stat(controlplane.StateFile(ks.Dir)); err == nil {
		cp, err := controlplane.Open(ks.Dir)
		if err == nil {
			err = cp.Stop()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: control plane: %w", err))
			return errs // its data may still be in use
		}
	}
	if err := os.RemoveAll(ks.Dir); err != nil {
		errs = append(errs, fmt.Errorf("lab: %w", err))
	}
	return errs
}
