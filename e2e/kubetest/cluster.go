package kubetest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Option adjusts a cluster before Start.
type Option func(*config)

type config struct {
	dataDir       string
	logDir        string
	serviceCIDR   netip.Prefix
	authzMode     string
	apiServerArgs []string
	readyTimeout  time.Duration
}

// WithDataDir puts etcd's data directory under dir instead of /dev/shm (or
// the test's temp dir where /dev/shm is absent).
func WithDataDir(dir string) Option { return func(c *config) { c.dataDir = dir } }

// WithLogDir writes etcd.log and kube-apiserver.log under dir, which outlives
// the test, instead of the test's temp dir.
func WithLogDir(dir string) Option { return func(c *config) { c.logDir = dir } }

// WithServiceCIDR sets --service-cluster-ip-range (default 10.96.0.0/12).
func WithServiceCIDR(p netip.Prefix) Option { return func(c *config) { c.serviceCIDR = p } }

// WithAuthorizationMode sets --authorization-mode (default "Node,RBAC"; the
// admin user is in system:masters and passes any mode).
func WithAuthorizationMode(mode string) Option { return func(c *config) { c.authzMode = mode } }

// WithAPIServerArgs appends flags to kube-apiserver's command line; a flag
// given again overrides the default (the last value wins).
func WithAPIServerArgs(args ...string) Option {
	return func(c *config) { c.apiServerArgs = append(c.apiServerArgs, args...) }
}

// WithReadyTimeout bounds how long Start and StartAPIServer wait for /readyz
// (default 90 s: a cold apiserver on a loaded 2-core machine is slow).
func WithReadyTimeout(d time.Duration) Option { return func(c *config) { c.readyTimeout = d } }

// Cluster is a running etcd + kube-apiserver pair. Its exported fields are
// set by Start and not changed afterwards; Config is shared, so copy it
// (rest.CopyConfig) before changing it.
type Cluster struct {
	URL        string // https://127.0.0.1:<port>
	EtcdURL    string // http://127.0.0.1:<port>
	Kubeconfig string // kubeconfig file for the admin user (system:masters)
	Config     *rest.Config
	Client     *kubernetes.Clientset
	Dir        string // certificates, kubeconfigs
	LogDir     string // etcd.log, kube-apiserver.log
	Binaries   Binaries

	// Start-up timings: etcd healthy, kube-apiserver /readyz, and their sum.
	EtcdStartup      time.Duration
	APIServerStartup time.Duration
	StartupTime      time.Duration

	t       testing.TB
	cfg     config
	pki     *pki
	admin   keyPair
	dataDir string
	apiPort int

	mu        sync.Mutex
	etcd      *proc
	apiserver *proc
	stopped   bool
}

// ErrStopped is returned by operations on a cluster after Stop.
var ErrStopped = errors.New("kubetest: cluster stopped")

// Start runs etcd and kube-apiserver and returns once /readyz answers ok.
// The cluster is stopped on t.Cleanup; on a failed test the tails of both
// logs are written to the test log first.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	bins := RequireBinaries(t)
	cfg := config{
		serviceCIDR:  netip.MustParsePrefix("10.96.0.0/12"),
		authzMode:    "Node,RBAC",
		readyTimeout: 90 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Cluster{t: t, cfg: cfg, Binaries: bins, Dir: t.TempDir()}
	c.LogDir = c.Dir
	if cfg.logDir != "" {
		if err := os.MkdirAll(cfg.logDir, 0o755); err != nil {
			t.Fatalf("kubetest: log dir: %v", err)
		}
		c.LogDir = cfg.logDir
	}
	dataDir, err := makeDataDir(cfg.dataDir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	// Cleanups run last-registered first: stop the processes, then remove
	// their data (t.TempDir registered its own removal before either).
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	c.dataDir = filepath.Join(dataDir, "etcd")
	t.Cleanup(c.cleanup)

	if err := c.writePKI(); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	begin := time.Now()
	if err := c.startEtcd(); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c.EtcdStartup = time.Since(begin)
	apiBegin := time.Now()
	if err := c.startAPIServerFresh(); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c.APIServerStartup = time.Since(apiBegin)
	c.StartupTime = time.Since(begin)
	return c
}

// makeDataDir creates a private directory for etcd's data: on tmpfs when the
// caller did not choose, since etcd's fsyncs (already off) and compactions
// are what make a disk-backed test etcd slow.
func makeDataDir(parent string) (string, error) {
	if parent == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			parent = "/dev/shm"
		} else {
			parent = os.TempDir()
		}
		// Only in the shared default location: a caller's own directory is
		// the caller's business.
		sweepStaleDataDirs(parent)
	}
	d, err := os.MkdirTemp(parent, dataDirPrefix)
	if err != nil {
		return "", fmt.Errorf("etcd data dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", fmt.Errorf("etcd data dir owner: %w", err)
	}
	return d, nil
}

const (
	dataDirPrefix = "tabby-kubetest-"
	ownerFile     = "owner.pid"
)

// sweepStaleDataDirs removes data directories whose test process is gone.
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

// cleanup is the t.Cleanup hook: log tails on failure, then Stop.
func (c *Cluster) cleanup() {
	if c.t.Failed() {
		for _, name := range []string{"etcd", "kube-apiserver"} {
			path := filepath.Join(c.LogDir, name+".log")
			if _, err := os.Stat(path); err == nil {
				c.t.Logf("kubetest: last lines of %s:\n%s", path, tailFile(path, 40))
			}
		}
	}
	c.Stop()
}

// Stop kills kube-apiserver and then etcd (each with its process group). It
// is idempotent and also runs on t.Cleanup.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	for _, p := range []**proc{&c.apiserver, &c.etcd} {
		if *p == nil {
			continue
		}
		if err := (*p).kill(); err != nil {
			c.t.Errorf("kubetest: %v", err)
		}
		*p = nil
	}
}

// StopAPIServer kills kube-apiserver (SIGKILL, like a crash) and leaves etcd
// running. Clients see connection refused until StartAPIServer.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ErrStopped
	}
	if c.apiserver == nil {
		return errors.New("kubetest: kube-apiserver is not running")
	}
	err := c.apiserver.kill()
	c.apiserver = nil
	return err
}

// StartAPIServer starts kube-apiserver again on the same port, certificates
// and etcd, and waits for /readyz. Existing clients (Config, Client,
// informers) reconnect on their own.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ErrStopped
	}
	if c.apiserver != nil {
		return errors.New("kubetest: kube-apiserver is already running")
	}
	p, err := c.runAPIServer(c.apiPort)
	if err != nil {
		return err
	}
	c.apiserver = p
	return nil
}

// APIServerRunning reports whether kube-apiserver has been started and not
// stopped (it does not probe health).
func (c *Cluster) APIServerRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apiserver != nil && !c.apiserver.exited()
}
