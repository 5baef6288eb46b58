package lab

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

func decode(t *testing.T, yamlText string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func pod(ns, name, node, ip string) string {
	s := "---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: \"" + ns + "\", name: " + name + "}\nspec:\n"
	if node != "" {
		s += "  nodeName: " + node + "\n"
	}
	s += "  containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]\n"
	if ip != "" {
		s += "status: {podIP: " + ip + "}\n"
	}
	return s
}

func TestPlanPlacement(t *testing.T) {
	objs := decode(t, pod("x", "a", "", "")+pod("x", "b", "node-3", "")+pod("x", "c", "", "10.244.1.10")+
		pod("y", "a", "", "")+pod("y", "b", "", "fd00::5"))
	p, err := makePlan(objs, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Round-robin in file order over the pods without nodeName: x/a, x/c,
	// y/a, y/b -> node 1, 2, 3, 1; x/b stays on node-3.
	want := map[string]struct {
		node int
		ips  string
	}{
		"x/a": {1, "10.244.1.11"}, // .10 is x/c's own address: skipped
		"x/b": {3, "10.244.3.10"},
		"x/c": {2, "10.244.1.10"},
		"y/a": {3, "10.244.3.11"},
		"y/b": {1, "fd00::5"},
	}
	if len(p.pods) != len(want) {
		t.Fatalf("%d pods planned, want %d", len(p.pods), len(want))
	}
	for _, pp := range p.pods {
		w := want[pp.name()]
		var ips []string
		for _, ip := range pp.IPs {
			ips = append(ips, ip.String())
		}
		if pp.Node != w.node || strings.Join(ips, ",") != w.ips {
			t.Errorf("%s: node %d IPs %v, want node %d IPs %s", pp.name(), pp.Node, ips, w.node, w.ips)
		}
		if got := strings.Join(pp.servedPorts(), ","); got != "53/UDP,80/TCP" {
			t.Errorf("%s: served ports %s", pp.name(), got)
		}
	}
	if !p.v6 {
		t.Error("a pod has IPv6 but the plan has no IPv6 underlay")
	}
}

func TestPlanRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml  string
		nodes int
		want  string
	}{
		"unknown node":     {pod("x", "a", "worker-1", ""), 2, `spec.nodeName "worker-1" is not a lab node`},
		"node beyond N":    {pod("x", "a", "node-3", ""), 2, `"node-3" is not a lab node (want node-1..node-2)`},
		"node-01":          {pod("x", "a", "node-01", ""), 2, "not a lab node"},
		"duplicate IP":     {pod("x", "a", "", "10.0.0.1") + pod("x", "b", "", "10.0.0.1"), 2, "same IP 10.0.0.1"},
		"underlay address": {pod("x", "a", "", "192.168.254.11"), 2, "underlay"},
		"invalid object":   {pod("x", "a", "", "10.0.0.300"), 2, "manifests"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := makePlan(decode(t, tc.yaml), tc.nodes)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a *ConfigError containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Files: []string{"f"}, Nodes: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != DefaultName || c.StateDir != DefaultStateDir || c.ReadyTimeout != DefaultReadyTimeout {
		t.Errorf("defaults not applied: %+v", c)
	}
	for _, bad := range []Config{
		{Files: []string{"f"}, Nodes: 0},
		{Files: []string{"f"}, Nodes: MaxNodes + 1},
		{Nodes: 1},
		{Files: []string{"f"}, Nodes: 1, Name: "Bad_Name"},
		{Files: []string{"f"}, Nodes: 1, Name: "a--b"},
	} {
		var ce *ConfigError
		if _, err := bad.withDefaults(); !errors.As(err, &ce) {
			t.Errorf("%+v: got %v, want a *ConfigError", bad, err)
		}
	}
}

func TestNames(t *testing.T) {
	if got := podNetnsName("tabby-lab", "x", "a"); got != "tabby-lab-pod-x-a" {
		t.Errorf("short name: %s", got)
	}
	long1 := podNetnsName("tabby-lab", "network-policy-conformance-gryffindor", "harry-potter-0")
	long2 := podNetnsName("tabby-lab", "network-policy-conformance-gryffindor", "harry-potter-1")
	if long1 == long2 || len(long1) > maxNetnsName || !strings.HasPrefix(long1, "tabby-lab-pod-network-policy") {
		t.Errorf("long names %q and %q: want distinct, <= %d bytes, readable prefix", long1, long2, maxNetnsName)
	}
	re := leftoverRE("tabby-lab")
	for name, want := range map[string]bool{
		"tabby-lab-underlay":  true,
		"tabby-lab-cp":        true,
		"tabby-lab-cp2":       false,
		"tabby-lab-node-1":    true,
		"tabby-lab-node-12":   true,
		"tabby-lab-pod-x-a":   true,
		long1:                 true,
		"tabby-lab-node-x":    false,
		"tabby-lab-node-0":    false,
		"tabby-lab2-node-1":   false,
		"tlab-e2e-node-1":     false,
		"tabby-lab-underlay2": false,
		"tabby-lab":           false,
		"my-tabby-lab-node-1": false,
	} {
		if re.MatchString(name) != want {
			t.Errorf("leftover pattern on %q: got %v, want %v", name, !want, want)
		}
	}
	if nodeAddr(underlayV4, 2) != netip.MustParseAddr("192.168.254.12") || bridgeAddr(underlayV6) != netip.MustParseAddr("fd74:6162:6279::1") ||
		cpAddr() != netip.MustParseAddr("192.168.254.2") {
		t.Error("underlay numbering changed: update the package documentation's diagram")
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p, err := makePlan(decode(t, pod("x", "a", "", "")+pod("y", "b", "node-2", "fd00::1")), 2)
	if err != nil {
		t.Fatal(err)
	}
	st := newState(Config{Name: "t", StateDir: dir, Nodes: 2}, p)
	st.Nodes[0].Agent = &Proc{PID: 42, StartTime: 7, Args: []string{"tabby", "agent"}, Log: "/l"}
	if err := saveState(st); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Nodes[0].Agent.PID != 42 || got.Pods[1].IPs[0] != netip.MustParseAddr("fd00::1") ||
		got.Nodes[1].UnderlayIPs[1] != netip.MustParseAddr("fd74:6162:6279::c") || got.Underlay.Netns != "t-underlay" {
		t.Errorf("state did not round-trip: %+v", got)
	}
	// The plan Open rebuilds from the state file is the one Up made.
	q := planFromState(got)
	for i, pp := range p.pods {
		qp := q.pods[i]
		if qp.Ref != pp.Ref || qp.Node != pp.Node || qp.IPs[0] != pp.IPs[0] ||
			strings.Join(qp.servedPorts(), ",") != strings.Join(pp.servedPorts(), ",") {
			t.Errorf("pod %d: plan from state %+v, want %+v", i, qp, pp)
		}
	}
	var nolab *NoLabError
	if _, err := loadState(t.TempDir()); !errors.As(err, &nolab) {
		t.Errorf("empty dir: got %v, want *NoLabError", err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"version": 99}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("future version: got %v", err)
	}
}

func TestProcStat(t *testing.T) {
	state, start, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if state != 'R' && state != 'S' {
		t.Errorf("own state %c", state)
	}
	self := Proc{PID: os.Getpid(), StartTime: start}
	if !alive(self) {
		t.Error("this process is not alive")
	}
	// A recycled PID: same number, other start time.
	if alive(Proc{PID: os.Getpid(), StartTime: start + 1}) {
		t.Error("a process with another start time counts as the recorded one")
	}
}

func TestParsePort(t *testing.T) {
	for in, want := range map[string]string{"80": "80/TCP", "53/udp": "53/UDP", "9000/SCTP": "9000/SCTP"} {
		p, err := ParsePort(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePort(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"0/TCP", "70000", "80/ICMP", "x/TCP", ""} {
		var ce *ConfigError
		if _, err := ParsePort(in); !errors.As(err, &ce) {
			t.Errorf("ParsePort(%q): got %v, want a *ConfigError", in, err)
		}
	}
}
