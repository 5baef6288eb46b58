// Command tabby-bench runs Tabby's benchmarks several times and prints one
// table: the median of every reported metric, its spread, and the target it
// is held to (or, for a figure without a target, what it measures).
// Machines are noisy, so medians and ratios are what we report.
//
//	tabby-bench [-count 5] [-benchtime 1x] [-pkgs ./selectors,./compiler,...]
//	tabby-bench -parse FILE   # summarise saved `go test -bench` output
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// target is a bound a metric must meet: an upper bound (max) for costs,
// or, when min is set, a lower bound for throughputs and ratios. With
// neither it only describes the metric (a figure the issues ask for
// without a bound).
type target struct {
	bench, unit string
	max         float64
	what        string
	min         float64
}

// check reports whether v meets t, and the bound as printed ("" for a
// description).
func (t target) check(v float64) (bool, string) {
	switch {
	case t.min > 0:
		return v >= t.min, fmt.Sprintf(">= %g", t.min)
	case t.max > 0:
		return v <= t.max, fmt.Sprintf("<= %g", t.max)
	}
	return true, ""
}

// targets are the performance targets.
var targets = []target{
	{"BenchmarkFullCompile", "ms/compile", 300, "full compile, 10k pods / 2k policies", 0},
	{"BenchmarkFullCompile", "MiB-peak-heap", 150, "peak heap of a full compile", 0},
	{"BenchmarkIncrementalPodLabelChange", "µs-p50", 1000, "one pod label change", 0},
	{"BenchmarkIncrementalPolicyChange", "µs-p50", 1000, "one policy change", 0},
	{"BenchmarkIncrementalPodAdd", "µs-p50", 1000, "one pod add", 0},
	{"BenchmarkFullProgram", "ms/program", 500, "program the 10k-pod ruleset into a netns", 0},
	// e2e/perf (root): from the agent's receipt of the inotify event for a
	// manifest rename (/status lastChangeSeen) to the end of the Sync that
	// enforced it (lastSync): "once the file is seen". The figure from the
	// rename itself is reported next to it (ms-p99), without a target.
	{"BenchmarkChangeToEnforced", "seen-ms-p99", 10, "manifest change seen to kernel enforced, p99", 0},
	{bench: "BenchmarkThroughput", unit: "ratio-2000", min: 0.95, what: "iperf3 TCP with 2000 policies / with none"},
	// e2e/perf (root, Kubernetes mode, 3 nodes): issue 4's figures, no
	// bound given. Every agent's reported end of the Sync that applied
	// the change (max over the nodes), confirmed by probes / set reads.
	{bench: "BenchmarkKubeApplyToEnforced", unit: "ms-p50", what: "NetworkPolicy server-side apply -> enforced on every node"},
	{bench: "BenchmarkKubeApplyToEnforced", unit: "ms-p99", what: "NetworkPolicy server-side apply -> enforced on every node"},
	{bench: "BenchmarkKubeApplyToEnforced", unit: "watch-ms-p50", what: "server-side apply -> watch event at the last agent"},
	{bench: "BenchmarkKubeApplyToEnforced", unit: "watch-ms-p99", what: "server-side apply -> watch event at the last agent"},
	{bench: "BenchmarkKubeApplyToEnforced", unit: "kubectl-ms-p50", what: "`kubectl apply --server-side` (process start included) -> enforced on every node"},
	{bench: "BenchmarkKubeApplyToEnforced", unit: "kubectl-ms-p99", what: "`kubectl apply --server-side` (process start included) -> enforced on every node"},
	{bench: "BenchmarkKubePodToSets", unit: "create-ms-p50", what: "pod create call -> its IP in every node's sets (lab kubelet included)"},
	{bench: "BenchmarkKubePodToSets", unit: "create-ms-p99", what: "pod create call -> its IP in every node's sets (lab kubelet included)"},
	{bench: "BenchmarkKubePodToSets", unit: "status-ms-p50", what: "status.podIP write -> its IP in every node's sets"},
	{bench: "BenchmarkKubePodToSets", unit: "status-ms-p99", what: "status.podIP write -> its IP in every node's sets"},
	{bench: "BenchmarkKubePodToSets", unit: "kubelet-ms-p50", what: "the lab's kubelet: create -> pod built -> status write"},
}

func main() {
	count := flag.Int("count", 5, "runs of each benchmark")
	benchtime := flag.String("benchtime", "", "go test -benchtime")
	pkgs := flag.String("pkgs", "./selectors,./compiler,./compiler/trace,./enforcer,./e2e/perf", "packages, comma-separated")
	parse := flag.String("parse", "", "summarise this saved go test -bench output instead of running")
	flag.Parse()

	var in io.Reader
	if *parse != "" {
		f, err := os.Open(*parse)
		if err != nil {
			fatal(err)
		}
		defer f.Close()
		in = f
	} else {
		// -timeout: go test's default 10 min covers one package's benchmarks
		// only until -count multiplies the end-to-end ones (e2e/perf starts
		// several labs per run).
		args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", strconv.Itoa(*count), "-timeout", "2h"}
		if *benchtime != "" {
			args = append(args, "-benchtime", *benchtime)
		}
		args = append(args, strings.Split(*pkgs, ",")...)
		fmt.Fprintln(os.Stderr, "go", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		os.Stderr.Write(out)
		if err != nil {
			fatal(fmt.Errorf("go test: %w", err))
		}
		in = strings.NewReader(string(out))
	}
	res, order, err := parseBench(in)
	if err != nil {
		fatal(err)
	}
	if len(order) == 0 {
		fatal(fmt.Errorf("no benchmark results"))
	}
	if missed := printTable(os.Stdout, res, order); missed > 0 {
		fmt.Printf("\n%d target(s) missed\n", missed)
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "tabby-bench:", err)
	os.Exit(2)
}

type key struct{ bench, unit string }

// parseBench reads `go test -bench` lines: name, iterations, then value/unit
// pairs. The -N GOMAXPROCS suffix is dropped.
func parseBench(r io.Reader) (map[key][]float64, []key, error) {
	res := map[key][]float64{}
	var order []key
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			k := key{name, f[i+1]}
			if _, ok := res[k]; !ok {
				order = append(order, k)
			}
			res[k] = append(res[k], v)
		}
	}
	return res, order, sc.Err()
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func printTable(w io.Writer, res map[key][]float64, order []key) int {
	fmt.Fprintf(w, "%-48s %-18s %12s %12s %12s %5s  %s\n", "benchmark", "metric", "median", "min", "max", "runs", "target")
	missed := 0
	for _, k := range order {
		v := res[k]
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		tgt := ""
		for _, t := range targets {
			if t.bench == k.bench && t.unit == k.unit {
				status := "ok"
				ok, bound := t.check(median(v))
				if !ok {
					status = "MISSED"
					missed++
				}
				tgt = fmt.Sprintf("%s (%s): %s", bound, t.what, status)
				if bound == "" {
					tgt = t.what
				}
			}
		}
		fmt.Fprintf(w, "%-48s %-18s %12s %12s %12s %5d  %s\n", k.bench, k.unit, num(median(v)), num(s[0]), num(s[len(s)-1]), len(v), tgt)
	}
	return missed
}

// num prints a value readably: integers above 100 without decimals, smaller
// values with three significant digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
