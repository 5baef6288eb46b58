package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

type line struct {
	From, To string
	Port     int
	Protocol string
	Allowed  bool
}

func TestMatrixJSON(t *testing.T) {
	code, out, stderr := runCLI("policy", "matrix", "-f", "testdata/pods.yaml", "-f", "testdata/deny-x.yaml", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Expected by hand from deny-x.yaml: pods of x admit only x/b on TCP 80;
	// z/c is not selected by any policy.
	want := []line{
		{"x/a", "x/b", 80, "TCP", false},
		{"x/a", "z/c", 8080, "TCP", true},
		{"x/b", "x/a", 53, "UDP", false},
		{"x/b", "x/a", 80, "TCP", true},
		{"x/b", "z/c", 8080, "TCP", true},
		{"z/c", "x/a", 53, "UDP", false},
		{"z/c", "x/a", 80, "TCP", false},
		{"z/c", "x/b", 80, "TCP", false},
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		var got line
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d %q: %v", i+1, l, err)
		}
		if got != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i+1, got, want[i])
		}
		// The format's key order: from, to, port, protocol, allowed.
		if !strings.HasPrefix(l, `{"from":`) || !strings.Contains(l, `"to":`) {
			t.Errorf("line %d %q: not in the matrix format", i+1, l)
		}
	}
}

func TestMatrixTable(t *testing.T) {
	code, out, stderr := runCLI("policy", "matrix", "-f", "testdata/pods.yaml", "-f", "testdata/deny-x.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// One grid per port/protocol, with the allowed count in the title.
	for _, want := range []string{"53/UDP  (0 of 2 allowed", "80/TCP  (1 of 4 allowed", "8080/TCP  (2 of 2 allowed", "1 x/a", "3 z/c"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestExplain(t *testing.T) {
	code, out, stderr := runCLI("policy", "explain", "-f", "testdata/pods.yaml", "-f", "testdata/deny-x.yaml",
		"--from", "z/c", "--to", "x/a", "--port", "80")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"z/c -> x/a port 80/TCP: DENIED", "no policy selects z/c for egress",
		"tier kubernetes", "NetworkPolicy x/allow-b"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI("policy", "explain", "-f", "testdata/pods.yaml", "-f", "testdata/deny-x.yaml",
		"--from", "x/b", "--to", "x/a", "--port", "80/tcp")
	if code != 0 || !strings.Contains(out, "ALLOWED") || !strings.Contains(out, "allowed by NetworkPolicy x/allow-b rule ingress[0]") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestBadInputExits2(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string // all must appear in stderr
	}{
		{"invalid field", []string{"policy", "matrix", "-f", "testdata/pods.yaml", "-f", "testdata/bad-port.yaml"},
			[]string{"testdata/bad-port.yaml", "NetworkPolicy x/broken", "spec.ingress[0].ports[0].port"}},
		{"missing file", []string{"policy", "matrix", "-f", "testdata/nope.yaml"}, []string{"testdata/nope.yaml"}},
		{"no files", []string{"policy", "matrix"}, []string{"-f FILE"}},
		{"bad output", []string{"policy", "matrix", "-f", "testdata/pods.yaml", "-o", "xml"}, []string{`-o "xml"`}},
		{"unknown pod", []string{"policy", "explain", "-f", "testdata/pods.yaml", "--from", "x/zz", "--to", "x/a", "--port", "80"},
			[]string{`no pod "x/zz"`}},
		{"bad port", []string{"policy", "explain", "-f", "testdata/pods.yaml", "--from", "x/a", "--to", "x/b", "--port", "80/icmp"},
			[]string{"--port"}},
		{"pod without IP where an ipBlock needs it", []string{"policy", "matrix", "-f", "testdata/pods.yaml", "-f", "testdata/noip.yaml", "-f", "testdata/ipblock.yaml"},
			[]string{"z/d", "status.podIP"}},
		{"unknown command", []string{"frobnicate"}, []string{"unknown command"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(c.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
		})
	}
}

// A pod without status.podIP is simulated with a synthetic address when no
// policy matches addresses.
func TestPodWithoutIPIsFineWithoutIPBlocks(t *testing.T) {
	code, out, stderr := runCLI("policy", "matrix", "-f", "testdata/pods.yaml", "-f", "testdata/noip.yaml", "-f", "testdata/deny-x.yaml", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, `{"from":"z/d","to":"x/b","port":80,"protocol":"TCP","allowed":false}`) ||
		!strings.Contains(out, `{"from":"x/a","to":"z/d","port":80,"protocol":"TCP","allowed":true}`) {
		t.Errorf("z/d missing or wrong:\n%s", out)
	}
}

func TestCompile(t *testing.T) {
	code, out, stderr := runCLI("policy", "compile", "-f", "testdata/pods.yaml", "-f", "testdata/deny-x.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"table inet tabby {", "chain forward {", "knp/x/allow-b/ingress", "map to-endpoint"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
}

// When egress drops a packet, explain still says what the destination's
// ingress would decide on its own (the demo app: frontend may not reach db).
func TestExplainIngressAlone(t *testing.T) {
	code, out, stderr := runCLI("policy", "explain", "-f", "../../e2e/demo/app.yaml", "-f", "../../e2e/demo/policies.yaml",
		"--from", "web/frontend", "--to", "data/db", "--port", "5432/TCP")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"DENIED", "egress from web/frontend: denied: tier kubernetes default-deny",
		"NetworkPolicy web/frontend-to-api", "ingress to data/db: not reached; on its own it would be denied",
		"NetworkPolicy data/db-from-api"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	// And the monitoring scrape the ClusterNetworkPolicy admits.
	code, out, _ = runCLI("policy", "explain", "-f", "../../e2e/demo/app.yaml", "-f", "../../e2e/demo/policies.yaml",
		"--from", "monitoring/scraper", "--to", "data/db", "--port", "9100/TCP")
	if code != 0 || !strings.Contains(out, `allowed by ClusterNetworkPolicy allow-monitoring rule ingress[0] "scrape-metrics" (tier cnp-admin)`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
