// Command tabby-bench runs Tabby's benchmarks several times and prints one
// table: the median of every reported metric, its spread, and the target it
// is held to. Machines are noisy, so medians and ratios are what we report.
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

// target is a bound a metric must meet.
type target struct {
	bench, unit string
	max         float64
	what        string
}

// targets are the performance targets.
var targets = []target{
	{"BenchmarkFullCompile", "ms/compile", 300, "full compile, 10k pods / 2k policies"},
	{"BenchmarkFullCompile", "MiB-peak-heap", 150, "peak heap of a full compile"},
	{"BenchmarkIncrementalPodLabelChange", "µs-p50", 1000, "one pod label change"},
	{"BenchmarkIncrementalPolicyChange", "µs-p50", 1000, "one policy change"},
	{"BenchmarkIncrementalPodAdd", "µs-p50", 1000, "one pod add"},
	{"BenchmarkFullProgram", "ms/program", 500, "program the 10k-pod ruleset into a netns"},
}

func main() {
	count := flag.Int("count", 5, "runs of each benchmark")
	benchtime := flag.String("benchtime", "", "go test -benchtime")
	pkgs := flag.String("pkgs", "./selectors,./compiler,./compiler/trace,./enforcer", "packages, comma-separated")
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
		args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", strconv.Itoa(*count)}
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
				if median(v) > t.max {
					status = "MISSED"
					missed++
				}
				tgt = fmt.Sprintf("<= %g (%s): %s", t.max, t.what, status)
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
