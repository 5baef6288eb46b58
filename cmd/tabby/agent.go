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
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/tabbynet/tabby/cmd/tabby/agent"
	"github.com/tabbynet/tabby/cmd/tabby/nodestatus"
	"github.com/tabbynet/tabby/enforcer"
	"github.com/tabbynet/tabby/policy/store"
	"github.com/tabbynet/tabby/policy/store/kubestore"
)

// Datastores of --datastore.
const (
	datastoreKubernetes = "kubernetes"
	datastoreManifests  = "manifests"
)

// agentFlags are the agent command's options, resolved: defaults, the
// environment and the rules between flags applied.
type agentFlags struct {
	node, datastore, kubeconfig, manifests string
	nodeStatus                             bool
	netns, healthAddr                      string
	logFormat, logLevel, ifaces            string
	debounce, maxDelay, reconcile          time.Duration
	rescan, recheck                        time.Duration
}

const agentHelp = `usage: tabby agent [--node NAME] [flags]

Runs the node agent: it reads policy objects from the Kubernetes API server
(--datastore kubernetes, the default) or from a directory of manifests
(--manifests DIR), compiles the policies that apply to this node's pods and
keeps the nftables table "inet tabby" equal to the result. With the
kubernetes datastore it reports what it enforces in the TabbyNode named after
the node (kubectl get tabbynodes).

Every flag can also be set by the environment variable TABBY_<FLAG>: the
flag's name in upper case with - as _ (TABBY_LOG_LEVEL=debug,
TABBY_HEALTH_ADDR=127.0.0.1:9099, TABBY_NODE_STATUS=false). A flag on the
command line wins; an empty variable is ignored. The node's name falls back
to $NODE_NAME, which the DaemonSet sets from spec.nodeName.

flags:
`

func parseAgentFlags(args []string, stdout io.Writer) (*agentFlags, error) {
	f := &agentFlags{}
	var nodeStatus optBool
	fs := flag.NewFlagSet("tabby agent", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), agentHelp)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.node, "node", "", "this node's name: pods with spec.nodeName == NAME are local (default $NODE_NAME)")
	fs.StringVar(&f.datastore, "datastore", "",
		"where objects come from: kubernetes (the API server) or manifests (--manifests) (default: manifests when --manifests is given, else kubernetes)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "",
		"kubeconfig file for the API server (default $KUBECONFIG; neither: the in-cluster service account)")
	fs.Var(&nodeStatus, "node-status",
		"write the TabbyNode named after the node with what the agent enforces (default true with the kubernetes datastore; only there)")
	fs.StringVar(&f.manifests, "manifests", "", "directory of manifests (*.yaml, *.yml, *.json) to enforce (the manifests datastore)")
	fs.StringVar(&f.netns, "netns", "", "network namespace file of the node (default: the agent's own)")
	fs.StringVar(&f.healthAddr, "health-addr", defaultHealthAddr, "address of /healthz, /readyz and /status")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.ifaces, "interface-discovery", "route",
		"how local pods' interfaces are found: route (the route to the pod's IP) or none (Tabby CNI names)")
	fs.DurationVar(&f.debounce, "debounce", agent.DefaultDebounce, "quiet time after a change before a batch runs")
	fs.DurationVar(&f.maxDelay, "max-delay", agent.DefaultMaxDelay, "longest a change waits for its batch")
	fs.DurationVar(&f.reconcile, "reconcile-interval", agent.DefaultReconcileInterval, "period of the kernel drift check")
	fs.DurationVar(&f.rescan, "rescan-interval", store.DefaultRescanInterval, "period of the full manifest directory rescan (the manifests datastore)")
	fs.DurationVar(&f.recheck, "interface-recheck", agent.DefaultInterfaceRecheck, "period of lookups of pods without an interface")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, badInput("agent: %v", err)
	}
	if fs.NArg() > 0 {
		return nil, badInput("agent: unexpected argument %q", fs.Arg(0))
	}
	givenAs, err := applyEnv(fs, "agent")
	if err != nil {
		return nil, err
	}
	// as names a flag as it was given: a bad value from the ConfigMap is
	// reported with its key.
	as := func(name string) string {
		if g := givenAs[name]; g != "" {
			return g
		}
		return "--" + name
	}
	if f.node == "" {
		f.node = os.Getenv("NODE_NAME")
	}
	if f.kubeconfig == "" {
		f.kubeconfig = os.Getenv("KUBECONFIG")
	}
	if f.datastore == "" {
		f.datastore = datastoreKubernetes
		if f.manifests != "" {
			f.datastore = datastoreManifests
		}
	}
	switch {
	case f.node == "":
		return nil, badInput("agent: --node is required (or $NODE_NAME)")
	case f.datastore != datastoreKubernetes && f.datastore != datastoreManifests:
		return nil, badInput("agent: %s %q: want kubernetes or manifests", as("datastore"), f.datastore)
	case f.datastore == datastoreManifests && f.manifests == "":
		return nil, badInput("agent: --manifests is required with the manifests datastore")
	case f.datastore == datastoreKubernetes && f.manifests != "":
		return nil, badInput("agent: %s is only read with the manifests datastore, %s is kubernetes", as("manifests"), as("datastore"))
	case f.datastore == datastoreManifests && givenAs["kubeconfig"] != "":
		return nil, badInput("agent: %s is only read with the kubernetes datastore", as("kubeconfig"))
	case f.datastore == datastoreManifests && nodeStatus.set && nodeStatus.v:
		return nil, badInput("agent: %s needs the kubernetes datastore (the TabbyNode lives in the API server)", as("node-status"))
	case f.logFormat != "json" && f.logFormat != "text":
		return nil, badInput("agent: %s %q: want json or text", as("log-format"), f.logFormat)
	case f.ifaces != "route" && f.ifaces != "none":
		return nil, badInput("agent: %s %q: want route or none", as("interface-discovery"), f.ifaces)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, badInput("agent: %s %q: want debug, info, warn or error", as("log-level"), f.logLevel)
	}
	f.nodeStatus = f.datastore == datastoreKubernetes && (!nodeStatus.set || nodeStatus.v)
	return f, nil
}

// newLogger returns the agent's logger; level was checked by parseAgentFlags.
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
// cmd/tabby/agent). With the manifests datastore:
//
//	store.Dir(--manifests) ──► agent.Agent(--node) ──► enforcer.Enforcer(--netns)
//	                               ▲      │                 (Applier + Reconciler)
//	   agent.RouteFinder(--netns) ─┘      └──► HTTP --health-addr: /healthz /readyz /status
//
// With the kubernetes datastore (the DaemonSet of deploy/):
//
//	            kube-apiserver  (--kubeconfig, else in-cluster; User-Agent tabby-agent/<version>)
//	   list+watch │   ▲ get nodes/<node>; get, create tabbynodes/<node>; update tabbynodes/<node>/status
//	              ▼   │                   (a change at most every 2 s, at least every 60 s, backoff while down)
//	kubestore.Store ──│──► agent.Agent(--node) ──► enforcer.Enforcer(--netns)
//	(shared informers)│     │       ▲     │
//	                  │     │       │     └──► HTTP --health-addr: /healthz /readyz /status ◄── tabby health [--ready]
//	                  │     │       └── agent.RouteFinder(--netns)
//	nodestatus.Reporter ◄───┘ agent.Status(), polled every 500 ms (--node-status)
//
// The informers' initial lists end in the datastore's Synced; the agent runs
// no batch before it, so /readyz (the first Sync after it) says the node
// enforces the whole cluster's policy. The reporter runs on its own
// goroutine with its own API client and rate limiter: API trouble never
// slows the agent's loop. The enforcer is closed on exit, which only
// releases its socket: the kernel table stays.
func agentCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	// The datastore first: a bad kubeconfig or directory is reported before
	// anything touches the kernel.
	ds, rc, err := openDatastore(f, log)
	if err != nil {
		return err
	}
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
		Node: f.node, Applier: enf, Logger: log, Datastore: ds,
		Debounce: f.debounce, MaxDelay: f.maxDelay, ReconcileInterval: f.reconcile, InterfaceRecheck: f.recheck,
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
	var reporter *nodestatus.Reporter
	if f.nodeStatus {
		dyn, err := dynamic.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("agent: node status client: %w", err)
		}
		reporter, err = nodestatus.New(nodestatus.Config{
			Client: dyn, Node: f.node, Source: a.Status, Datastore: f.datastore, AgentVersion: buildVersion(),
			Logger: log.With("component", "nodestatus"),
		})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}

	ln, err := net.Listen("tcp", f.healthAddr)
	if err != nil {
		return fmt.Errorf("agent: health endpoint: %w", err)
	}
	attrs := []any{"version", buildVersion(), "datastore", f.datastore, "netns", orDefault(f.netns, "(own)"),
		"health", ln.Addr().String(), "interface_discovery", f.ifaces}
	if rc != nil {
		attrs = append(attrs, "api_server", rc.Host, "kubeconfig", orDefault(f.kubeconfig, "(in-cluster)"), "node_status", f.nodeStatus)
	} else {
		attrs = append(attrs, "manifests", f.manifests)
	}
	log.Info("agent starting", attrs...)

	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srvDone := make(chan error, 1)
	go func() { srvDone <- a.ServeHealth(srvCtx, ln) }()
	if reporter != nil {
		wg.Go(func() { _ = reporter.Run(runCtx) }) // returns nil when runCtx ends; API errors are retried inside
	}

	runErr := a.Run(runCtx)
	stopAll()
	wg.Wait()
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

// openDatastore builds the datastore of f.datastore; rc is the API server
// configuration with the kubernetes datastore (nil otherwise).
func openDatastore(f *agentFlags, log *slog.Logger) (ds store.Datastore, rc *rest.Config, err error) {
	if f.datastore == datastoreManifests {
		if fi, err := os.Stat(f.manifests); err != nil || !fi.IsDir() {
			return nil, nil, badInput("agent: --manifests %s: not a readable directory", f.manifests)
		}
		return store.NewDir(f.manifests, store.DirOptions{RescanInterval: f.rescan, Logger: log.With("component", "store")}), nil, nil
	}
	rc, err = kubeConfig(f.kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	// client-go logs through klog: into the agent's log, in its format.
	klog.SetSlogLogger(log.With("component", "client-go"))
	ks, err := kubestore.New(kubestore.Config{REST: rc, Node: f.node, Logger: log.With("component", "kubestore")})
	if err != nil {
		return nil, nil, badInput("agent: %v", err) // New does no I/O: its errors are about the configuration
	}
	return ks, rc, nil
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
