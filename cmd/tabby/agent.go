package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/enforcer"
	"github.com/tabbynet/tabby/policy/store"
)

// agentFlags are the agent command's options.
type agentFlags struct {
	node, manifests, netns, healthAddr string
	logFormat, logLevel, ifaces        string
	debounce, maxDelay, reconcile      time.Duration
	rescan, recheck                    time.Duration
}

func parseAgentFlags(args []string, stdout io.Writer) (*agentFlags, error) {
	f := &agentFlags{}
	fs := flag.NewFlagSet("tabby agent", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&f.node, "node", os.Getenv("NODE_NAME"), "this node's name: pods with spec.nodeName == NAME are local (default $NODE_NAME)")
	fs.StringVar(&f.manifests, "manifests", "", "directory of manifests (*.yaml, *.yml, *.json) to enforce")
	fs.StringVar(&f.netns, "netns", "", "network namespace file of the node (default: the agent's own)")
	fs.StringVar(&f.healthAddr, "health-addr", "127.0.0.1:9099", "address of /healthz, /readyz and /status")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.ifaces, "interface-discovery", "route",
		"how local pods' interfaces are found: route (the route to the pod's IP) or none (Tabby CNI names)")
	fs.DurationVar(&f.debounce, "debounce", agent.DefaultDebounce, "quiet time after a change before a batch runs")
	fs.DurationVar(&f.maxDelay, "max-delay", agent.DefaultMaxDelay, "longest a change waits for its batch")
	fs.DurationVar(&f.reconcile, "reconcile-interval", agent.DefaultReconcileInterval, "period of the kernel drift check")
	fs.DurationVar(&f.rescan, "rescan-interval", store.DefaultRescanInterval, "period of the full manifest directory rescan")
	fs.DurationVar(&f.recheck, "interface-recheck", agent.DefaultInterfaceRecheck, "period of lookups of pods without an interface")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, badInput("agent: %v", err)
	}
	switch {
	case fs.NArg() > 0:
		return nil, badInput("agent: unexpected argument %q", fs.Arg(0))
	case f.node == "":
		return nil, badInput("agent: --node is required")
	case f.manifests == "":
		return nil, badInput("agent: --manifests is required")
	case f.logFormat != "json" && f.logFormat != "text":
		return nil, badInput("agent: --log-format %q: want json or text", f.logFormat)
	case f.ifaces != "route" && f.ifaces != "none":
		return nil, badInput("agent: --interface-discovery %q: want route or none", f.ifaces)
	}
	return f, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, badInput("agent: --log-level %q: %v", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// agentCommand wires the agent's pipeline (see the diagram in package
// cmd/tabby/agent):
//
//	store.Dir(--manifests) ──► agent.Agent(--node) ──► enforcer.Enforcer(--netns)
//	                               ▲      │                 (Applier + Reconciler)
//	   agent.RouteFinder(--netns) ─┘      └──► HTTP --health-addr: /healthz /readyz /status
//
// The enforcer is closed on exit, which only releases its socket: the
// kernel table stays.
func agentCommand(args []string, stdout, stderr io.Writer) error {
	f, err := parseAgentFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(f.manifests); err != nil || !fi.IsDir() {
		return badInput("agent: --manifests %s: not a readable directory", f.manifests)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	enf, err := enforcer.New(enforcer.Options{NetNSPath: f.netns, Logger: log.With("component", "enforcer")})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer func() {
		if err := enf.Close(); err != nil {
			log.Warn("closing the enforcer", "error", err)
		}
	}()
	cfg := agent.Config{
		Node: f.node, Applier: enf, Logger: log,
		Datastore: store.NewDir(f.manifests, store.DirOptions{RescanInterval: f.rescan, Logger: log.With("component", "store")}),
		Debounce:  f.debounce, MaxDelay: f.maxDelay, ReconcileInterval: f.reconcile, InterfaceRecheck: f.recheck,
	}
	if f.ifaces == "route" {
		finder, err := agent.NewRouteFinder(f.netns)
		if err != nil {
			return err
		}
		defer finder.Close()
		cfg.Interfaces = finder
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", f.healthAddr)
	if err != nil {
		return fmt.Errorf("agent: health endpoint: %w", err)
	}
	log.Info("agent starting", "manifests", f.manifests, "netns", orDefault(f.netns, "(own)"),
		"health", ln.Addr().String(), "interface_discovery", f.ifaces)
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srvDone := make(chan error, 1)
	go func() { srvDone <- a.ServeHealth(srvCtx, ln) }()

	runErr := a.Run(ctx)
	stopSrv()
	if err := <-srvDone; err != nil {
		log.Warn("health server", "error", err)
	}
	if runErr != nil {
		return runErr
	}
	log.Info("stopped by signal; the nftables table stays in place")
	return nil
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
