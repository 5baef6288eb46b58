package kubetest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tabbynet/tabby/e2e/controlplane"
)

// Option adjusts a cluster before Start.
type Option func(*controlplane.Options)

// WithDataDir puts etcd's data directory under dir instead of /dev/shm (or
// the system temp dir where /dev/shm is absent).
func WithDataDir(dir string) Option { return func(o *controlplane.Options) { o.DataDir = dir } }

// WithLogDir writes etcd.log and kube-apiserver.log under dir, which outlives
// the test, instead of the test's temp dir.
func WithLogDir(dir string) Option { return func(o *controlplane.Options) { o.LogDir = dir } }

// WithServiceCIDR sets --service-cluster-ip-range (default 10.96.0.0/12).
func WithServiceCIDR(p netip.Prefix) Option {
	return func(o *controlplane.Options) { o.ServiceCIDR = p }
}

// WithAuthorizationMode sets --authorization-mode (default "Node,RBAC"; the
// admin user is in system:masters and passes any mode).
func WithAuthorizationMode(mode string) Option {
	return func(o *controlplane.Options) { o.AuthorizationMode = mode }
}

// WithAPIServerArgs appends flags to kube-apiserver's command line; a flag
// given again overrides the default (the last value wins).
func WithAPIServerArgs(args ...string) Option {
	return func(o *controlplane.Options) { o.APIServerArgs = append(o.APIServerArgs, args...) }
}

// WithReadyTimeout bounds how long Start and StartAPIServer wait for /readyz
// (default 90 s: a cold apiserver on a loaded 2-core machine is slow).
func WithReadyTimeout(d time.Duration) Option {
	return func(o *controlplane.Options) { o.ReadyTimeout = d }
}

// WithOptions changes any option of the underlying control plane (network
// namespace, bind address, port...). Dir and Detached are Start's.
func WithOptions(f func(*controlplane.Options)) Option { return Option(f) }

// Cluster is a running etcd + kube-apiserver pair: a *controlplane.ControlPlane
// (URL, EtcdURL, Kubeconfig, Config, Client, Dir, LogDir, Binaries, start-up
// timings, UserConfig, UserKubeconfig, WriteKubeconfig, StopAPIServer,
// StartAPIServer, APIServerRunning, Processes) owned by a test.
type Cluster struct {
	*controlplane.ControlPlane
	t testing.TB
}

// ErrStopped is returned by operations on a cluster after Stop.
var ErrStopped = controlplane.ErrStopped

// ExitError reports that a child exited while it was expected to run.
type ExitError = controlplane.ExitError

// Start runs etcd and kube-apiserver (attached: they die with the test
// binary) and returns once /readyz answers ok. The cluster is stopped on
// t.Cleanup; on a failed test the tails of both logs are written to the test
// log first.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	bins := RequireBinaries(t)
	o := controlplane.Options{Binaries: &bins}
	for _, f := range opts {
		f(&o)
	}
	o.Dir, o.Detached = t.TempDir(), false
	if o.LogDir != "" {
		if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
			t.Fatalf("kubetest: log dir: %v", err)
		}
	}
	logDir := o.LogDir
	if logDir == "" {
		logDir = o.Dir
	}
	cp, err := controlplane.Launch(context.Background(), o)
	if err != nil {
		logTails(t, logDir)
		t.Fatalf("kubetest: %v", err)
	}
	c := &Cluster{ControlPlane: cp, t: t}
	t.Cleanup(c.cleanup)
	return c
}

// cleanup is the t.Cleanup hook: log tails on failure, then Stop.
func (c *Cluster) cleanup() {
	if c.t.Failed() {
		logTails(c.t, c.LogDir)
	}
	c.Stop()
}

func logTails(t testing.TB, dir string) {
	for _, name := range []string{"etcd", "kube-apiserver"} {
		path := filepath.Join(dir, name+".log")
		if _, err := os.Stat(path); err == nil {
			t.Logf("kubetest: last lines of %s:\n%s", path, controlplane.TailLog(path, 40))
		}
	}
}

// Stop kills kube-apiserver and then etcd (each with its process group) and
// removes etcd's data; a failure fails the test. It is idempotent and also
// runs on t.Cleanup.
func (c *Cluster) Stop() {
	if err := c.ControlPlane.Stop(); err != nil {
		c.t.Errorf("kubetest: %v", err)
	}
}
