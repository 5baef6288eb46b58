package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tabbynet/tabby/compiler/sim"
	"github.com/tabbynet/tabby/e2e/lab"
)

const labUsage = `usage:
  tabbyctl lab up -f FILE... --nodes N [--state-dir DIR] [--name NAME] [--tabby PATH] [--ready-timeout D]
                 [--kubernetes [--deploy FILE]]   Kubernetes mode: etcd + kube-apiserver in netns NAME-cp, objects
                                                  created through the API, agents reading it (kubectl works too)
  tabbyctl lab apply -f FILE... [--state-dir DIR]     replace the running lab's manifests (pods may come and go; in
                                                     Kubernetes mode through the API) and wait until every agent has
                                                     enforced them
  tabbyctl lab probe [-o json|table] [--timeout D] [--concurrency N] [--state-dir DIR]
  tabbyctl lab down [--state-dir DIR] [--name NAME]
`

// labCommand dispatches `tabbyctl lab ...`. "serve" and "forward" are
// internal: the pod servers and the API forwarder `lab up` starts.
func labCommand(args []string, stdout io.Writer) error {
	if len(args) < 1 {
		return badInput("lab: missing subcommand\n%s", labUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "up":
		err = labUp(ctx, args[1:], stdout)
	case "apply":
		err = labApply(ctx, args[1:], stdout)
	case "probe":
		err = labProbe(ctx, args[1:], stdout)
	case "down":
		err = labDown(ctx, args[1:])
	case "serve":
		err = labServe(ctx, args[1:])
	case "forward":
		err = labForward(ctx, args[1:])
	default:
		return badInput("lab: unknown subcommand %q\n%s", args[0], labUsage)
	}
	// The lab's bad-input errors get the CLI's exit code 2.
	var ce *lab.ConfigError
	var ue *usageError
	if errors.As(err, &ce) && !errors.As(err, &ue) {
		return &usageError{err}
	}
	return err
}

func labFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseLabFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return badInput("%s: %v\n%s", fs.Name(), err, labUsage)
	}
	if fs.NArg() > 0 {
		return badInput("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func labUp(ctx context.Context, args []string, stdout io.Writer) error {
	fs := labFlags("lab up")
	var files fileList
	fs.Var(&files, "f", "manifest file (repeatable)")
	nodes := fs.Int("nodes", 0, "number of nodes")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	name := fs.String("name", lab.DefaultName, "prefix of the lab's namespace names")
	tabby := fs.String("tabby", "", "agent binary (default: tabby next to tabbyctl)")
	ready := fs.Duration("ready-timeout", lab.DefaultReadyTimeout, "wait for each server and agent")
	kube := fs.Bool("kubernetes", false, "Kubernetes mode: a real API server, objects created through it")
	deploy := fs.String("deploy", "", "Kubernetes mode: manifest with the CRDs and agent RBAC (default: "+lab.DefaultDeploy+" of this checkout)")
	if err := parseLabFlags(fs, args); err != nil {
		return err
	}
	switch {
	case len(files) == 0:
		return badInput("lab up: at least one -f FILE is required")
	case *nodes < 1:
		return badInput("lab up: --nodes N (1..%d) is required", lab.MaxNodes)
	case *deploy != "" && !*kube:
		return badInput("lab up: --deploy needs --kubernetes")
	}
	start := time.Now()
	l, err := lab.Up(ctx, lab.Config{Files: files, Nodes: *nodes, StateDir: *stateDir, Name: *name,
		Tabby: *tabby, ReadyTimeout: *ready, Kubernetes: *kube, Deploy: *deploy})
	if err != nil {
		return err
	}
	st := l.State()
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "NODE\tNETNS\tUNDERLAY\tAGENT PID\tLOG\n")
	for _, nd := range st.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", nd.Name, nd.Netns, joinAddrs(nd.UnderlayIPs), nd.Agent.PID, nd.Agent.Log)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "POD\tNODE\tIP\tNETNS\tPORTS\n")
	for _, p := range st.Pods {
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Node, joinAddrs(p.IPs), p.Netns,
			strings.Join(p.Ports, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ks := st.Kubernetes; ks != nil {
		fmt.Fprintf(stdout, "\nAPI server %s in netns %s (agents use it with deploy's RBAC); from this host:\n"+
			"  kubectl --kubeconfig %s get pods -A -o wide\n", ks.URL, ks.Netns, ks.Kubeconfig)
	}
	fmt.Fprintf(stdout, "\nlab up in %.1fs; state: %s; next: tabbyctl lab probe --state-dir %s\n",
		time.Since(start).Seconds(), lab.StateFile(st.StateDir), st.StateDir)
	return nil
}

func joinAddrs[T fmt.Stringer](as []T) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func labProbe(ctx context.Context, args []string, stdout io.Writer) error {
	fs := labFlags("lab probe")
	out := fs.String("o", "table", "output format: json or table")
	timeout := fs.Duration("timeout", lab.DefaultProbeTimeout, "timeout of one probe")
	conc := fs.Int("concurrency", lab.DefaultConcurrency, "probes in flight")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	if err := parseLabFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *out != "json" && *out != "table":
		return badInput("lab probe: -o %q: want json or table", *out)
	case *timeout <= 0:
		return badInput("lab probe: --timeout %v: want > 0", *timeout)
	case *conc < 1:
		return badInput("lab probe: --concurrency %d: want >= 1", *conc)
	}
	l, err := lab.Open(*stateDir)
	if err != nil {
		return err
	}
	m, err := l.ProbeWith(ctx, lab.ProbeOptions{Timeout: *timeout, Concurrency: *conc})
	if err != nil {
		return err
	}
	if *out == "json" {
		return sim.WriteJSON(stdout, m)
	}
	return sim.WriteTable(stdout, m)
}

// labApply gives the agents of a running lab new manifests (the whole desired
// state: the lab's pods plus any policies) and waits until all have applied it.
func labApply(ctx context.Context, args []string, stdout io.Writer) error {
	fs := labFlags("lab apply")
	var files fileList
	fs.Var(&files, "f", "manifest file (repeatable)")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	if err := parseLabFlags(fs, args); err != nil {
		return err
	}
	if len(files) == 0 {
		return badInput("lab apply: at least one -f FILE is required")
	}
	l, err := lab.Open(*stateDir)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := l.UpdateManifestFiles(files...); err != nil {
		return err
	}
	if err := l.WaitSynced(ctx); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "applied %s; every agent enforced it after %v\n", strings.Join(files, ", "), time.Since(start).Round(time.Millisecond))
	return err
}

func labDown(ctx context.Context, args []string) error {
	fs := labFlags("lab down")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	name := fs.String("name", "", "also remove leftover namespaces of this lab name (default: the recorded lab; "+lab.DefaultName+" without a state file)")
	if err := parseLabFlags(fs, args); err != nil {
		return err
	}
	return lab.Down(ctx, *stateDir, *name)
}

// labServe is the pod server `lab up` starts in the background.
func labServe(ctx context.Context, args []string) error {
	fs := labFlags("lab serve")
	var ports fileList
	fs.Var(&ports, "port", "port to serve, N/TCP|UDP|SCTP (repeatable)")
	netns := fs.String("netns", "", "pod network namespace path")
	banner := fs.String("banner", "", "answer of every probe (ns/pod)")
	readyFD := fs.Int("ready-fd", -1, "file descriptor to report readiness on")
	if err := parseLabFlags(fs, args); err != nil {
		return err
	}
	cfg := lab.ServeConfig{Netns: *netns, Banner: *banner, Ports: ports}
	if *readyFD >= 0 {
		f := os.NewFile(uintptr(*readyFD), "ready")
		if f == nil {
			return badInput("lab serve: --ready-fd %d: not a file descriptor", *readyFD)
		}
		cfg.Ready = f
	}
	return lab.Serve(ctx, cfg)
}

// labForward is the API forwarder `lab up --kubernetes` starts in the
// background: loopback of the root namespace to the control plane's namespace.
func labForward(ctx context.Context, args []string) error {
	fs := labFlags("lab forward")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	netns := fs.String("netns", "", "namespace path to connect from")
	to := fs.String("to", "", "address to connect to, inside --netns")
	readyFD := fs.Int("ready-fd", -1, "file descriptor to report readiness (and the address) on")
	if err := parseLabFlags(fs, args); err != nil {
		return err
	}
	cfg := lab.ForwardConfig{Listen: *listen, Netns: *netns, To: *to}
	if *readyFD >= 0 {
		f := os.NewFile(uintptr(*readyFD), "ready")
		if f == nil {
			return badInput("lab forward: --ready-fd %d: not a file descriptor", *readyFD)
		}
		cfg.Ready = f
	}
	return lab.Forward(ctx, cfg)
}
