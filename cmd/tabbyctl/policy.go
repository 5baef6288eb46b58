package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/policy"
)

// fileList is a repeatable -f flag.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func newFlags(name string) (*flag.FlagSet, *fileList) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var files fileList
	fs.Var(&files, "f", "manifest file (repeatable)")
	return fs, &files
}

func parseFlags(fs *flag.FlagSet, files *fileList, args []string) error {
	if err := fs.Parse(args); err != nil {
		return badInput("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return badInput("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	if len(*files) == 0 {
		return badInput("%s: at least one -f FILE is required", fs.Name())
	}
	return nil
}

// loadModel decodes and normalises the files. Any invalid object is bad
// input: the CLI reports every one rather than simulating a partial policy.
func loadModel(files []string) (*policy.Model, error) {
	objs, err := policy.LoadFiles(files...)
	if err != nil {
		return nil, &usageError{err}
	}
	m, errs := policy.Normalize(objs)
	if len(errs) > 0 {
		return nil, &usageError{errors.Join(errs...)}
	}
	return m, nil
}

func newSimulator(files []string) (*sim.Simulator, error) {
	m, err := loadModel(files)
	if err != nil {
		return nil, err
	}
	s, err := sim.New(m)
	if err != nil {
		var mi *sim.MissingIPError
		if errors.As(err, &mi) {
			return nil, &usageError{err}
		}
		return nil, err
	}
	return s, nil
}

func policyMatrix(args []string, stdout io.Writer) error {
	fs, files := newFlags("policy matrix")
	out := fs.String("o", "table", "output format: json or table")
	if err := parseFlags(fs, files, args); err != nil {
		return err
	}
	if *out != "json" && *out != "table" {
		return badInput("policy matrix: -o %q: want json or table", *out)
	}
	s, err := newSimulator(*files)
	if err != nil {
		return err
	}
	m, err := s.Matrix()
	if err != nil {
		return err
	}
	if *out == "json" {
		return sim.WriteJSON(stdout, m)
	}
	return sim.WriteTable(stdout, m)
}

func policyExplain(args []string, stdout io.Writer) error {
	fs, files := newFlags("policy explain")
	from := fs.String("from", "", "source pod NS/POD")
	to := fs.String("to", "", "destination pod NS/POD")
	port := fs.String("port", "", "destination port N[/TCP|UDP|SCTP]")
	if err := parseFlags(fs, files, args); err != nil {
		return err
	}
	if *from == "" || *to == "" || *port == "" {
		return badInput("policy explain: --from, --to and --port are required")
	}
	num, proto, err := parsePort(*port)
	if err != nil {
		return badInput("policy explain: --port %q: %v", *port, err)
	}
	s, err := newSimulator(*files)
	if err != nil {
		return err
	}
	ex, err := s.Explain(*from, *to, num, proto)
	if err != nil {
		var ue *sim.UnknownPodError
		if errors.As(err, &ue) {
			return &usageError{err}
		}
		return err
	}
	_, err = io.WriteString(stdout, ex.Text())
	return err
}

func parsePort(s string) (uint16, policy.Protocol, error) {
	num, protoName, _ := strings.Cut(s, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("port must be 1-65535")
	}
	proto := policy.ProtoTCP
	switch strings.ToUpper(protoName) {
	case "", "TCP":
	case "UDP":
		proto = policy.ProtoUDP
	case "SCTP":
		proto = policy.ProtoSCTP
	default:
		return 0, 0, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", protoName)
	}
	return uint16(n), proto, nil
}

func policyCompile(args []string, stdout io.Writer) error {
	fs, files := newFlags("policy compile")
	node := fs.String("node", "", "compile for this node's pods (default: every pod local)")
	if err := parseFlags(fs, files, args); err != nil {
		return err
	}
	m, err := loadModel(*files)
	if err != nil {
		return err
	}
	t, err := compiler.Compile(m, compiler.Options{Node: *node, AllLocal: *node == ""})
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, t.String())
	return err
}
