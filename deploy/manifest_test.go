package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tabbynet/tabby/e2e/kubetest"
)

// TestManifestUpToDate renders the policy-only overlay with the pinned
// kubectl (generate.sh, step manifest) into a temporary file and compares it
// with the checked-in tabby.yaml: a change to base/, overlays/ or the CRDs
// without `make generate` fails here.
func TestManifestUpToDate(t *testing.T) {
	bins := kubetest.RequireBinaries(t)
	readInputs(t, "generate.sh", "base", "overlays", "crds", manifestPath)
	out := filepath.Join(t.TempDir(), "tabby.yaml")
	cmd := exec.Command("bash", "generate.sh", "manifest")
	cmd.Env = append(os.Environ(), "MANIFEST="+out, "KUBECTL="+bins.Kubectl)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh manifest: %v\n%s", err, b)
	}
	same(t, out, manifestPath)
}

// TestManifestObjects checks what tabby.yaml holds: exactly the objects of
// contract B, namespaced ones in tabby-system, and a CRD for every custom
// resource the agent is allowed to read, so one apply installs all it
// watches.
func TestManifestObjects(t *testing.T) {
	objs := readManifest(t, manifestPath)
	var got []string
	crds := map[string]bool{}
	for _, o := range objs {
		got = append(got, o.GetKind()+" "+o.GetName())
		if o.GetKind() == "CustomResourceDefinition" {
			crds[o.GetName()] = true
		}
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding":
			if o.GetNamespace() != "" {
				t.Errorf("%s %s: cluster-scoped but has namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		default:
			if o.GetNamespace() != agentNamespace {
				t.Errorf("%s %s: namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), agentNamespace)
			}
		}
	}
	sort.Strings(got)
	want := []string{
		"ClusterRole tabby-agent",
		"ClusterRoleBinding tabby-agent",
		"ConfigMap tabby-config",
		"CustomResourceDefinition clusternetworkpolicies.policy.networking.k8s.io",
		"CustomResourceDefinition globalnetworkpolicies.tabby.dev",
		"CustomResourceDefinition globalnetworksets.tabby.dev",
		"CustomResourceDefinition networkpolicies.tabby.dev",
		"CustomResourceDefinition networksets.tabby.dev",
		"CustomResourceDefinition tabbynodes.tabby.dev",
		"CustomResourceDefinition tiers.tabby.dev",
		"DaemonSet tabby-agent",
		"Namespace tabby-system",
		"ResourceQuota tabby-critical-pods",
		"ServiceAccount tabby-agent",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("objects in %s:\n  %s\nwant\n  %s", manifestPath, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	builtin := map[string]bool{"": true, "networking.k8s.io": true}
	for _, p := range expand(agentRules) {
		if builtin[p.group] {
			continue
		}
		name := strings.TrimSuffix(p.resource, "/status") + "." + p.group
		if !crds[name] {
			t.Errorf("the agent reads %s but %s has no CRD %s", p, manifestPath, name)
		}
	}
	// The upstream CRD is the standard channel of the version go.mod pins.
	for _, o := range objs {
		if o.GetName() != "clusternetworkpolicies.policy.networking.k8s.io" {
			continue
		}
		ann := o.GetAnnotations()
		if ann["policy.networking.k8s.io/channel"] != "standard" || ann["policy.networking.k8s.io/bundle-version"] != networkPolicyAPIVersion(t) {
			t.Errorf("ClusterNetworkPolicy CRD annotations %v: want channel standard, bundle-version %s", ann, networkPolicyAPIVersion(t))
		}
	}
}

// networkPolicyAPIVersion is the sigs.k8s.io/network-policy-api version the
// main go.mod requires.
func networkPolicyAPIVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*sigs\.k8s\.io/network-policy-api (v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod does not require sigs.k8s.io/network-policy-api")
	}
	return string(m[1])
}

// TestManifestRBAC checks the rendered ClusterRole against contract B rule
// by rule, and its binding to the agent's ServiceAccount. The API server
// test (TestManifestOnAPIServer) checks what the rules allow in effect.
func TestManifestRBAC(t *testing.T) {
	objs := readManifest(t, manifestPath)
	role := find[rbacv1.ClusterRole](t, objs, "ClusterRole", agentName)
	if !reflect.DeepEqual(role.Rules, agentRules) {
		t.Errorf("ClusterRole %s rules are not contract B's (in its order): %s", agentName, permissionDiff(expand(role.Rules), expand(agentRules)))
	}
	if role.AggregationRule != nil {
		t.Errorf("ClusterRole %s aggregates other roles: %+v", agentName, role.AggregationRule)
	}
	binding := find[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", agentName)
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: agentName}
	wantSubjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: agentName, Namespace: agentNamespace}}
	if binding.RoleRef != wantRef || !reflect.DeepEqual(binding.Subjects, wantSubjects) {
		t.Errorf("ClusterRoleBinding %s: roleRef %+v subjects %+v; want %+v %+v", agentName, binding.RoleRef, binding.Subjects, wantRef, wantSubjects)
	}
	find[corev1.ServiceAccount](t, objs, "ServiceAccount", agentName)
}

// measuredRSS is the agent's resident memory on a 10,000-pod cluster.
var measuredRSS = resource.MustParse("170Mi")

// TestDaemonSetShape checks the agent's pod against contract B: host
// network, exactly NET_ADMIN on top of nothing, no privilege, node name from
// the downward API, settings from the ConfigMap, and the probes of contract C.
func TestDaemonSetShape(t *testing.T) {
	objs := readManifest(t, manifestPath)
	ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", agentName)
	pod := ds.Spec.Template.Spec
	if s := ds.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateDaemonSetStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("updateStrategy %+v: want RollingUpdate with maxUnavailable 1", s)
	}
	if !pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("hostNetwork %v hostPID %v hostIPC %v: want the host network only", pod.HostNetwork, pod.HostPID, pod.HostIPC)
	}
	if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", pod.DNSPolicy)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", pod.PriorityClassName)
	}
	if want := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}; !reflect.DeepEqual(pod.Tolerations, want) {
		t.Errorf("tolerations %+v: want one that tolerates every taint", pod.Tolerations)
	}
	if pod.ServiceAccountName != agentName || pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("serviceAccountName %q automount %v: want %s with its token mounted", pod.ServiceAccountName, pod.AutomountServiceAccountToken, agentName)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g > 30 {
		t.Errorf("terminationGracePeriodSeconds %v: want set, and short (the agent leaves its rules in place)", g)
	}
	if len(pod.Volumes) > 0 || len(pod.InitContainers) > 0 {
		t.Errorf("volumes %+v init containers %+v: the agent needs neither", pod.Volumes, pod.InitContainers)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/tabbynet/tabby:") && !strings.HasPrefix(c.Image, "ghcr.io/tabbynet/tabby@") {
		t.Errorf("image %q: want ghcr.io/tabbynet/tabby with a tag or digest", c.Image)
	}
	if !slices.Equal(c.Command, []string{"tabby", "agent"}) || len(c.Args) > 0 {
		t.Errorf("command %q args %q: want [tabby agent], settings from the ConfigMap", c.Command, c.Args)
	}
	wantEnv := []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	if !reflect.DeepEqual(c.Env, wantEnv) {
		t.Errorf("env %+v: want only NODE_NAME from spec.nodeName", c.Env)
	}
	wantFrom := []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "tabby-config"}}}}
	if !reflect.DeepEqual(c.EnvFrom, wantFrom) {
		t.Errorf("envFrom %+v: want the ConfigMap tabby-config", c.EnvFrom)
	}
	if len(c.Ports) > 0 {
		t.Errorf("ports %+v: the health endpoint is on loopback, nothing is exposed", c.Ports)
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	checkBool := func(name string, got *bool, want bool) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("securityContext.%s %v, want %v", name, got, want)
		}
	}
	checkBool("privileged", sc.Privileged, false)
	checkBool("allowPrivilegeEscalation", sc.AllowPrivilegeEscalation, false)
	checkBool("readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem, true)
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("runAsUser %v: want 0 (added capabilities are effective for root only)", sc.RunAsUser)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) {
		t.Errorf("capabilities %+v: want drop [ALL] add [NET_ADMIN]", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	if sc.ProcMount != nil || sc.SELinuxOptions != nil || sc.AppArmorProfile != nil {
		t.Errorf("securityContext %+v: unexpected procMount, SELinux or AppArmor override", sc)
	}
	if psc := pod.SecurityContext; psc != nil && (psc.RunAsUser != nil || len(psc.Sysctls) > 0) {
		t.Errorf("pod securityContext %+v: the container's is the one that counts", psc)
	}

	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().Cmp(measuredRSS) < 0 {
		t.Errorf("requests %v: want CPU and at least the measured %s of memory", req, measuredRSS.String())
	}
	twice := measuredRSS.DeepCopy()
	twice.Add(measuredRSS)
	if m, ok := lim[corev1.ResourceMemory]; !ok || m.Cmp(twice) < 0 || m.Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %v: want at least twice the measured %s and no less than the request", lim.Memory(), measuredRSS.String())
	}

	probe := func(name string, p *corev1.Probe, want []string) {
		t.Helper()
		if p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, want) {
			t.Errorf("%s %+v: want exec %q", name, p, want)
			return
		}
		if p.TimeoutSeconds < 2 || p.PeriodSeconds < p.TimeoutSeconds {
			t.Errorf("%s: timeout %ds period %ds", name, p.TimeoutSeconds, p.PeriodSeconds)
		}
	}
	probe("livenessProbe", c.LivenessProbe, []string{"tabby", "health"})
	probe("readinessProbe", c.ReadinessProbe, []string{"tabby", "health", "--ready"})
}

// agentFlags runs `tabby agent -h` and returns its flags with the type the
// flag package prints ("duration", "string", ...; "bool" for a flag
// printed without a type).
func agentFlags(t *testing.T, tabby string) map[string]string {
	t.Helper()
	out, err := exec.Command(tabby, "agent", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("tabby agent -h: %v\n%s", err, out)
	}
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)(?: ([a-z0-9]+))?$`).FindAllStringSubmatch(string(out), -1) {
		typ := m[2]
		if typ == "" {
			typ = "bool"
		}
		flags[m[1]] = typ
	}
	if len(flags) < 5 {
		t.Fatalf("found only %v in `tabby agent -h`:\n%s", flags, out)
	}
	return flags
}

// TestConfigMapKeysAreAgentFlags checks that every setting in tabby-config
// is TABBY_<FLAG> of a flag `tabby agent` has (contract C), with a value of
// the flag's type, and that none of them is one the DaemonSet must not
// set through the ConfigMap.
func TestConfigMapKeysAreAgentFlags(t *testing.T) {
	objs := readManifest(t, manifestPath)
	cm := find[corev1.ConfigMap](t, objs, "ConfigMap", "tabby-config")
	flags := agentFlags(t, tabbyBinary(t))
	notHere := map[string]string{
		"node":            "comes from NODE_NAME (the downward API's spec.nodeName)",
		"manifests":       "is the standalone datastore",
		"rescan-interval": "is for the standalone datastore only",
		"netns":           "is for the lab: hostNetwork puts the agent in the node's namespace",
		"kubeconfig":      "is for agents outside the cluster: the DaemonSet uses the in-cluster config",
	}
	if len(cm.Data) == 0 || len(cm.BinaryData) > 0 {
		t.Fatalf("ConfigMap data %v binaryData %v: want settings in data", cm.Data, cm.BinaryData)
	}
	for key, value := range cm.Data {
		rest, ok := strings.CutPrefix(key, "TABBY_")
		if !ok || rest == "" || strings.ToUpper(rest) != rest {
			t.Errorf("%s: not TABBY_<FLAG IN UPPER SNAKE CASE>", key)
			continue
		}
		flag := strings.ReplaceAll(strings.ToLower(rest), "_", "-")
		typ, ok := flags[flag]
		if !ok {
			t.Errorf("%s: `tabby agent` has no flag --%s", key, flag)
			continue
		}
		if why, bad := notHere[flag]; bad {
			t.Errorf("%s: --%s %s", key, flag, why)
		}
		switch typ {
		case "duration":
			if d, err := time.ParseDuration(value); err != nil || d <= 0 {
				t.Errorf("%s=%q: want a positive duration", key, value)
			}
		case "bool":
			if _, err := strconv.ParseBool(value); err != nil {
				t.Errorf("%s=%q: want a boolean", key, value)
			}
		}
	}
	// Policy-only mode: interfaces are whatever the other CNI named them.
	if got := cm.Data["TABBY_INTERFACE_DISCOVERY"]; got != "route" {
		t.Errorf("TABBY_INTERFACE_DISCOVERY=%q, want route in policy-only mode", got)
	}
}
