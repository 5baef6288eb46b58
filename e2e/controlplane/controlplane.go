package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options say how to run a control plane. Only Dir is required.
type Options struct {
	// Dir holds certificates, kubeconfigs and the state file
	// (controlplane.json). It must exist; Stop leaves it in place.
	Dir string
	// LogDir receives etcd.log and kube-apiserver.log (default Dir). Every
	// incarnation of a component appends to the same file.
	LogDir string
	// DataDir is the parent of etcd's data directory, which Launch creates
	// and Stop removes. Default: /dev/shm (tmpfs; the test's temp dir where
	// it is absent) for an attached control plane, Dir for a detached one.
	DataDir string
	// Binaries are the executables (default: FindBinaries(BinDir())).
	Binaries *Binaries
	// BindAddress is where kube-apiserver listens (default 127.0.0.1); it
	// is also its advertise address and in its serving certificate. etcd
	// always listens on 127.0.0.1 of the control plane's namespace.
	BindAddress netip.Addr
	// Port is kube-apiserver's secure port (0: a free one).
	Port int
	// Netns is the path of a network namespace (/run/netns/NAME) to run
	// etcd and kube-apiserver in ("" = the caller's). Its loopback must be
	// up. Config and Client then dial from inside it, so they work from the
	// launching process whatever namespace it is in.
	Netns string
	// Detached makes the processes independent of the launching process:
	// each leads a session of its own, has no death signal, and its PID and
	// start time are in the state file, so Open and Stop work from another
	// process. Attached processes are killed by the kernel
	// (PR_SET_PDEATHSIG) when the launching process dies.
	Detached bool
	// ServiceCIDR is --service-cluster-ip-range (default 10.96.0.0/12).
	ServiceCIDR netip.Prefix
	// AuthorizationMode is --authorization-mode (default "Node,RBAC"; the
	// admin user is in system:masters and passes any mode).
	AuthorizationMode string
	// APIServerArgs are appended to kube-apiserver's command line; a flag
	// given again overrides the default (the last value wins).
	APIServerArgs []string
	// ReadyTimeout bounds the wait for /readyz at Launch and StartAPIServer
	// (default 90 s: a cold apiserver on a loaded 2-core machine is slow).
	ReadyTimeout time.Duration
}

// State is the record of a control plane: <Dir>/controlplane.json. It is
// written as processes start and stop, so another process can Open it.
type State struct {
	Version     int        `json:"version"`
	Dir         string     `json:"dir"`
	LogDir      string     `json:"logDir"`
	DataDir     string     `json:"dataDir"` // etcd's; removed by Stop
	Netns       string     `json:"netns,omitempty"`
	Detached    bool       `json:"detached"`
	BindAddress netip.Addr `json:"bindAddress"`
	Port        int        `json:"port"`
	URL         string     `json:"url"`
	EtcdURL     string     `json:"etcdURL"`
	Binaries    Binaries   `json:"binaries"`
	// ServiceCIDR, AuthorizationMode and ExtraAPIServerArgs are Options'.
	ServiceCIDR        netip.Prefix `json:"serviceCIDR"`
	AuthorizationMode  string       `json:"authorizationMode"`
	ExtraAPIServerArgs []string     `json:"extraAPIServerArgs,omitempty"`
	// APIServerCommand is kube-apiserver's full command line, port
	// included: StartAPIServer runs exactly this again.
	APIServerCommand []string      `json:"apiserverCommand"`
	ReadyTimeout     time.Duration `json:"readyTimeout"`
	Stopped          bool          `json:"stopped"`
	Etcd             *Process      `json:"etcd,omitempty"`
	APIServer        *Process      `json:"apiserver,omitempty"`
	// Replicas are the running extra kube-apiservers (StartReplica).
	Replicas []Process `json:"replicas,omitempty"`
}

const (
	stateVersion = 1
	stateFile    = "controlplane.json"
)

// StateFile is the path of a control plane's state file in dir.
func StateFile(dir string) string { return filepath.Join(dir, stateFile) }

// ControlPlane is a running etcd + kube-apiserver pair. Its exported fields
// are set by Launch (or Open) and not changed afterwards; Config is shared,
// so copy it (rest.CopyConfig) before changing it.
type ControlPlane struct {
	URL        string // https://<bind address>:<port>
	EtcdURL    string // http://127.0.0.1:<port>, in the control plane's namespace
	Kubeconfig string // kubeconfig file for the admin user (system:masters), server URL
	Config     *rest.Config
	Client     *kubernetes.Clientset
	Dir        string // certificates, kubeconfigs, state file
	LogDir     string // etcd.log, kube-apiserver.log
	Binaries   Binaries

	// Start-up timings (Launch only): etcd healthy, kube-apiserver
	// /readyz, and their sum.
	EtcdStartup      time.Duration
	APIServerStartup time.Duration
	StartupTime      time.Duration

	pki      *pki
	admin    keyPair
	launcher *launcher

	mu        sync.Mutex
	st        State
	etcd      *proc
	apiserver *proc
	replicas  []*proc
}

// ErrStopped is returned by operations on a control plane after Stop.
var ErrStopped = errors.New("controlplane: stopped")

// Launch runs etcd and kube-apiserver and returns once /readyz answers ok.
// On failure everything it started is stopped again.
func Launch(ctx context.Context, opts Options) (*ControlPlane, error) {
	st, err := opts.state()
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{Dir: st.Dir, LogDir: st.LogDir, Binaries: st.Binaries, st: st}
	c.launcher = newLauncher(st.Netns, !st.Detached)
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		c.launcher.close()
		return nil, fmt.Errorf("controlplane: log dir: %w", err)
	}
	dataDir, err := makeDataDir(opts.DataDir, st.Dir, st.Detached)
	if err != nil {
		c.launcher.close()
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	c.st.DataDir = dataDir
	if err := c.launch(ctx, opts.Port); err != nil {
		if serr := c.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	return c, nil
}

func (o Options) state() (State, error) {
	st := State{Version: stateVersion, Netns: o.Netns, Detached: o.Detached, BindAddress: o.BindAddress,
		ReadyTimeout: o.ReadyTimeout, ServiceCIDR: o.ServiceCIDR, AuthorizationMode: o.AuthorizationMode,
		ExtraAPIServerArgs: append([]string(nil), o.APIServerArgs...)}
	if o.Dir == "" {
		return st, errors.New("controlplane: Options.Dir is required")
	}
	if fi, err := os.Stat(o.Dir); err != nil || !fi.IsDir() {
		return st, fmt.Errorf("controlplane: Options.Dir %s is not a directory", o.Dir)
	}
	var err error
	if st.Dir, err = filepath.Abs(o.Dir); err != nil {
		return st, fmt.Errorf("controlplane: %w", err)
	}
	st.LogDir = st.Dir
	if o.LogDir != "" {
		if st.LogDir, err = filepath.Abs(o.LogDir); err != nil {
			return st, fmt.Errorf("controlplane: %w", err)
		}
	}
	if o.Binaries != nil {
		st.Binaries = *o.Binaries
	} else if st.Binaries, err = FindBinaries(BinDir()); err != nil {
		return st, err
	}
	if !st.BindAddress.IsValid() {
		st.BindAddress = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if !st.ServiceCIDR.IsValid() {
		st.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
	}
	if st.AuthorizationMode == "" {
		st.AuthorizationMode = "Node,RBAC"
	}
	if st.ReadyTimeout <= 0 {
		st.ReadyTimeout = 90 * time.Second
	}
	if o.Port < 0 || o.Port > 65535 {
		return st, fmt.Errorf("controlplane: port %d", o.Port)
	}
	return st, nil
}

// launch does Launch's work on a ControlPlane whose state is filled in.
func (c *ControlPlane) launch(ctx context.Context, port int) error {
	if err := c.writePKI(); err != nil {
		return err
	}
	if err := c.save(); err != nil {
		return err
	}
	begin := time.Now()
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	c.EtcdStartup = time.Since(begin)
	apiBegin := time.Now()
	if err := c.startAPIServerFresh(ctx, port); err != nil {
		return err
	}
	c.APIServerStartup = time.Since(apiBegin)
	c.StartupTime = time.Since(begin)
	return nil
}

// makeDataDir creates a private directory for etcd's data under parent.
// Attached without a parent, it goes to tmpfs, where etcd's compactions do
// not touch a disk, with an owner file that lets a later run remove it when
// the owner was killed without cleaning up; a detached control plane's data
// lives under its Dir and has no owner file (its launcher exits by design).
func makeDataDir(parent, dir string, detached bool) (string, error) {
	shared := false
	if parent == "" {
		if detached {
			parent = dir
		} else {
			parent = os.TempDir()
			if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
				parent = "/dev/shm"
			}
			shared = true
			sweepStaleDataDirs(parent)
		}
	}
	d, err := os.MkdirTemp(parent, dataDirPrefix)
	if err != nil {
		return "", fmt.Errorf("etcd data dir: %w", err)
	}
	if shared {
		if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return "", fmt.Errorf("etcd data dir owner: %w", err)
		}
	}
	return d, nil
}

const (
	dataDirPrefix = "tabby-kubetest-"
	ownerFile     = "owner.pid"
)

// sweepStaleDataDirs removes data directories whose owner process is gone.
// A test binary killed by `go test -timeout` runs no cleanups: its children
// die with it (PDEATHSIG) but their tmpfs data would stay, in RAM, until
// reboot. Best effort: errors only mean something is left behind.
func sweepStaleDataDirs(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, dataDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // being created right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// save writes the state file (callers hold mu or are the only user).
func (c *ControlPlane) save() error {
	c.st.Etcd, c.st.APIServer = nil, nil
	if c.etcd != nil {
		p := c.etcd.Process
		c.st.Etcd = &p
	}
	if c.apiserver != nil {
		p := c.apiserver.Process
		c.st.APIServer = &p
	}
	c.st.Replicas = nil
	for _, r := range c.replicas {
		c.st.Replicas = append(c.st.Replicas, r.Process)
	}
	b, err := json.MarshalIndent(c.st, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := StateFile(c.Dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, StateFile(c.Dir)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// Open returns the detached control plane recorded in dir, for Stop,
// StopAPIServer, StartAPIServer and credentials from another process.
// Timings are zero. A stopped one is returned too; its operations fail
// with ErrStopped (Stop succeeds).
func Open(dir string) (*ControlPlane, error) {
	b, err := os.ReadFile(StateFile(dir))
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("controlplane: %s: %w", StateFile(dir), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("controlplane: %s: version %d, want %d", StateFile(dir), st.Version, stateVersion)
	}
	if !st.Detached {
		return nil, fmt.Errorf("controlplane: %s: not a detached control plane (its processes belong to their launcher)", dir)
	}
	c := &ControlPlane{URL: st.URL, EtcdURL: st.EtcdURL, Dir: st.Dir, LogDir: st.LogDir, Binaries: st.Binaries, st: st}
	c.launcher = newLauncher(st.Netns, false)
	if st.Etcd != nil {
		c.etcd = &proc{Process: *st.Etcd}
	}
	if st.APIServer != nil {
		c.apiserver = &proc{Process: *st.APIServer}
	}
	for _, r := range st.Replicas {
		c.replicas = append(c.replicas, &proc{Process: r})
	}
	if c.pki, err = loadPKI(st.Dir); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	cert, err1 := os.ReadFile(filepath.Join(st.Dir, adminCertFile))
	key, err2 := os.ReadFile(filepath.Join(st.Dir, adminKeyFile))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("controlplane: admin credentials: %w", err)
	}
	c.admin = keyPair{CertPEM: cert, KeyPEM: key}
	if st.URL != "" {
		if err := c.setEndpoint(st.Port); err != nil {
			return nil, fmt.Errorf("controlplane: %w", err)
		}
	}
	return c, nil
}

// State returns a copy of the record.
func (c *ControlPlane) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.APIServerCommand = append([]string(nil), st.APIServerCommand...)
	st.Replicas = append([]Process(nil), st.Replicas...)
	return st
}

// Processes returns the records of the running children (etcd first, then
// kube-apiserver, then any replicas).
func (c *ControlPlane) Processes() []Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Process
	for _, p := range append([]*proc{c.etcd, c.apiserver}, c.replicas...) {
		if p != nil && !p.exited() {
			out = append(out, p.Process)
		}
	}
	return out
}

// Stop kills any replicas, kube-apiserver and then etcd (each with its
// process group) and removes etcd's data. It is idempotent; from another
// process (Open) it stops a detached control plane.
func (c *ControlPlane) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	kept := c.replicas[:0]
	for _, r := range c.replicas {
		if err := r.kill(); err != nil {
			errs = append(errs, err)
			kept = append(kept, r)
		}
	}
	c.replicas = kept
	for _, p := range []**proc{&c.apiserver, &c.etcd} {
		if *p == nil {
			continue
		}
		if err := (*p).kill(); err != nil {
			errs = append(errs, err)
			continue
		}
		*p = nil
	}
	if len(errs) > 0 {
		// Data still in use stays; the record keeps what survived.
		_ = c.save()
		return fmt.Errorf("controlplane: %w", errors.Join(errs...))
	}
	c.launcher.close()
	if c.st.DataDir != "" {
		if err := os.RemoveAll(c.st.DataDir); err != nil {
			errs = append(errs, fmt.Errorf("controlplane: %w", err))
		}
	}
	c.st.Stopped = true
	if err := c.save(); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("controlplane: %w", err))
	}
	return errors.Join(errs...)
}

// StopAPIServer kills kube-apiserver (SIGKILL, like a crash) and leaves etcd
// running. Clients see connection refused until StartAPIServer.
func (c *ControlPlane) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Stopped {
		return ErrStopped
	}
	if c.apiserver == nil || c.apiserver.exited() {
		c.apiserver = nil
		return errors.New("controlplane: kube-apiserver is not running")
	}
	err := c.apiserver.kill()
	c.apiserver = nil
	return errors.Join(err, c.save())
}

// StartAPIServer starts kube-apiserver again with the same command line
// (port, certificates, etcd) and waits for /readyz. Existing clients
// (Config, Client, informers) reconnect on their own.
func (c *ControlPlane) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Stopped {
		return ErrStopped
	}
	if c.apiserver != nil && !c.apiserver.exited() {
		return errors.New("controlplane: kube-apiserver is already running")
	}
	// The port is fixed (clients and kubeconfigs know it). The kernel can
	// still hold it for a moment after the old process was killed (seen on
	// loaded machines when another process stopped it), so a bind failure
	// is retried for a while; any other failure is final.
	deadline := time.Now().Add(restartBindWait)
	for {
		// mu is held: the record goes straight into the slot.
		_, err := c.runAPIServer(context.Background(), c.st.APIServerCommand, c.Client, func(p *proc) error {
			c.apiserver = p
			return c.save()
		})
		var ee *ExitError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ee) && ee.addrInUse() && time.Now().Before(deadline):
			time.Sleep(250 * time.Millisecond)
		default:
			return fmt.Errorf("controlplane: %w", err)
		}
	}
}

// restartBindWait bounds StartAPIServer's retries while its port is still
// held by the process it replaces.
const restartBindWait = 15 * time.Second

// APIServerRunning reports whether kube-apiserver has been started and not
// stopped (it does not probe health).
func (c *ControlPlane) APIServerRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apiserver != nil && !c.apiserver.exited()
}
