package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkFullCompile-2   	       1	 250000000 ns/op	       240.0 ms/compile	        60.00 MiB-peak-heap
BenchmarkFullCompile-2   	       1	 350000000 ns/op	       340.0 ms/compile	        50.00 MiB-peak-heap
BenchmarkFullCompile-2   	       1	 260000000 ns/op	       250.0 ms/compile	        55.00 MiB-peak-heap
BenchmarkIndexLabelUpdate/relabel-2  45494  27071 ns/op  36940 updates/s
BenchmarkThroughput-2   1  12157789541 ns/op  3.97 Gbit/s-0  0.97 ratio-2000
BenchmarkThroughput-2   1  12157789541 ns/op  3.90 Gbit/s-0  0.96 ratio-2000
BenchmarkThroughput-2   1  12157789541 ns/op  3.80 Gbit/s-0  0.50 ratio-2000
BenchmarkKubeApplyToEnforced-2   1  33102901192 ns/op  108.8 kubectl-ms-p50  139.9 kubectl-ms-p99  10.27 ms-p50  14.42 ms-p99
PASS
`

func TestParseAndTargets(t *testing.T) {
	res, order, err := parseBench(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := res[key{"BenchmarkFullCompile", "ms/compile"}]; len(got) != 3 {
		t.Fatalf("ms/compile samples: %v", got)
	}
	if m := median(res[key{"BenchmarkFullCompile", "ms/compile"}]); m != 250 {
		t.Errorf("median %v, want 250 (one noisy run must not decide)", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if _, ok := res[key{"BenchmarkIndexLabelUpdate/relabel", "updates/s"}]; !ok {
		t.Errorf("sub-benchmark name not parsed: %v", order)
	}
	var out bytes.Buffer
	if missed := printTable(&out, res, order); missed != 0 {
		t.Errorf("missed %d targets:\n%s", missed, out.String())
	}
	// A figure without a target is described, never missed.
	if !strings.Contains(out.String(), "NetworkPolicy server-side apply -> enforced on every node") {
		t.Errorf("no description of a figure without a target:\n%s", out.String())
	}
	if strings.Contains(out.String(), "<= 0") {
		t.Errorf("a description printed as a bound:\n%s", out.String())
	}

	// A median over a target is reported as missed.
	res[key{"BenchmarkFullCompile", "ms/compile"}] = []float64{400, 410, 420}
	out.Reset()
	if missed := printTable(&out, res, order); missed != 1 || !strings.Contains(out.String(), "MISSED") {
		t.Errorf("missed %d:\n%s", missed, out.String())
	}

	// A lower bound: a median under it is missed, one above is not.
	res[key{"BenchmarkFullCompile", "ms/compile"}] = []float64{240}
	out.Reset()
	if missed := printTable(&out, res, order); missed != 0 || !strings.Contains(out.String(), ">= 0.95") {
		t.Errorf("ratio median 0.96 >= 0.95 missed %d:\n%s", missed, out.String())
	}
	res[key{"BenchmarkThroughput", "ratio-2000"}] = []float64{0.9, 0.5, 0.97}
	out.Reset()
	if missed := printTable(&out, res, order); missed != 1 || !strings.Contains(out.String(), "MISSED") {
		t.Errorf("ratio median 0.9 < 0.95: missed %d:\n%s", missed, out.String())
	}
}
