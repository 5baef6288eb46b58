package kubetest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// startAttempts bounds retries when a probed free port is taken before the
// child binds it.
const startAttempts = 3

// writePKI generates this cluster's keys and writes them under c.Dir.
func (c *Cluster) writePKI() error {
	p, err := newPKI()
	if err != nil {
		return err
	}
	serviceIP := c.cfg.serviceCIDR.Masked().Addr().Next() // the kubernetes Service's ClusterIP
	serving, err := p.serving(net.IP(serviceIP.AsSlice()))
	if err != nil {
		return err
	}
	admin, err := p.client("tabby-admin", "system:masters")
	if err != nil {
		return err
	}
	saPriv, saPub, err := serviceAccountKey()
	if err != nil {
		return err
	}
	c.pki, c.admin = p, admin
	return writeFiles(c.Dir, map[string][]byte{
		"ca.crt":        p.caPEM,
		"apiserver.crt": serving.CertPEM,
		"apiserver.key": serving.KeyPEM,
		"sa.key":        saPriv,
		"sa.pub":        saPub,
		"admin.crt":     admin.CertPEM,
		"admin.key":     admin.KeyPEM,
	})
}

// startEtcd starts a single-member etcd on two free loopback ports.
func (c *Cluster) startEtcd() error {
	var lastErr error
	for range startAttempts {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		// A failed attempt may have initialised the member with other peer
		// URLs; etcd refuses to start on such a directory.
		if err := os.RemoveAll(c.dataDir); err != nil {
			return fmt.Errorf("reset etcd data dir: %w", err)
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		args := []string{
			"--name=kubetest",
			"--data-dir=" + c.dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			"--initial-cluster-state=new",
			// Test state is disposable: skipping fsync makes etcd as fast on
			// disk as on tmpfs and keeps a busy CI disk from stalling it.
			"--unsafe-no-fsync",
			"--log-level=warn",
		}
		p, err := startProc("etcd", c.Binaries.Etcd, args, filepath.Join(c.LogDir, "etcd.log"))
		if err != nil {
			return err
		}
		err = waitReady(p, 30*time.Second, func(ctx context.Context) error {
			return etcdHealthy(ctx, client)
		})
		if err == nil {
			c.mu.Lock()
			c.etcd = p
			c.mu.Unlock()
			c.EtcdURL = client
			return nil
		}
		_ = p.kill()
		lastErr = err
		var ee *ExitError
		if !errors.As(err, &ee) || !ee.addrInUse() {
			break
		}
	}
	return fmt.Errorf("start etcd: %w", lastErr)
}

func etcdHealthy(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("etcd /health: %d %s", resp.StatusCode, body)
	}
	return nil
}

// startAPIServerFresh starts kube-apiserver on a free port (retrying if the
// port is taken under it) and builds the admin clients.
func (c *Cluster) startAPIServerFresh() error {
	var lastErr error
	for range startAttempts {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		if err := c.setEndpoint(ports[0]); err != nil {
			return err
		}
		p, err := c.runAPIServer(ports[0])
		if err == nil {
			c.mu.Lock()
			c.apiserver = p
			c.mu.Unlock()
			return nil
		}
		lastErr = err
		var ee *ExitError
		if !errors.As(err, &ee) || !ee.addrInUse() {
			break
		}
	}
	return lastErr
}

// setEndpoint fixes the port and derives the URL, admin rest.Config,
// clientset and kubeconfig from it.
func (c *Cluster) setEndpoint(port int) error {
	c.apiPort = port
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	c.Config = c.restConfig(c.admin)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	c.Client = cs
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return writeKubeconfig(c.Kubeconfig, c.URL, c.pki.caPEM, "tabby-admin", c.admin)
}

// apiServerArgs is kube-apiserver's command line for port.
func (c *Cluster) apiServerArgs(port int) []string {
	f := func(name string) string { return filepath.Join(c.Dir, name) }
	args := []string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + f("apiserver-certs"), // unused with explicit certs; keeps writes in the test dir
		"--tls-cert-file=" + f("apiserver.crt"),
		"--tls-private-key-file=" + f("apiserver.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=" + c.cfg.serviceCIDR.String(),
		"--authorization-mode=" + c.cfg.authzMode,
		// No controller manager mints service-account tokens, so the plugin
		// would reject every pod that does not opt out.
		"--disable-admission-plugins=ServiceAccount",
		// 127.0.0.1 is no endpoint a pod could use, and a restarted apiserver
		// must not fight over the kubernetes Endpoints object.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	return append(args, c.cfg.apiServerArgs...)
}

// runAPIServer starts kube-apiserver on port and waits for /readyz.
func (c *Cluster) runAPIServer(port int) (*proc, error) {
	p, err := startProc("kube-apiserver", c.Binaries.APIServer, c.apiServerArgs(port),
		filepath.Join(c.LogDir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	rc := c.Client.Discovery().RESTClient()
	err = waitReady(p, c.cfg.readyTimeout, func(ctx context.Context) error {
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, body)
		}
		return nil
	})
	if err != nil {
		_ = p.kill()
		return nil, fmt.Errorf("start kube-apiserver: %w", err)
	}
	return p, nil
}

// waitReady polls probe until it succeeds, the process exits (an
// *ExitError) or timeout passes (the last probe error).
func waitReady(p *proc, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	interval := 20 * time.Millisecond
	for {
		if p.exited() {
			return p.exitError()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := probe(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w\n--- last lines of its log ---\n%s",
				p.name, timeout, err, tailFile(p.logPath, 30))
		}
		select {
		case <-p.done:
		case <-time.After(interval):
		}
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// restConfig is a client configuration for the holder of kp.
func (c *Cluster) restConfig(kp keyPair) *rest.Config {
	return &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: kp.CertPEM,
			KeyData:  kp.KeyPEM,
		},
		// client-go's defaults (5 QPS, burst 10) would make tests that create
		// hundreds of objects wait on the client rather than the server.
		QPS:       500,
		Burst:     1000,
		UserAgent: "tabby-kubetest",
	}
}

// UserConfig mints a client certificate for user in groups (CN and O, as
// kube-apiserver's x509 authenticator reads them) and returns a rest.Config
// for it, so tests can run components with the RBAC they ship.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := c.pki.client(user, groups...)
	if err != nil {
		return nil, err
	}
	return c.restConfig(kp), nil
}

// UserKubeconfig is UserConfig written as a kubeconfig file in c.Dir, for
// components run as separate processes. It returns the file's path.
func (c *Cluster) UserKubeconfig(user string, groups ...string) (string, error) {
	kp, err := c.pki.client(user, groups...)
	if err != nil {
		return "", err
	}
	safe := strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, user)
	path := filepath.Join(c.Dir, "kubeconfig-"+safe)
	return path, writeKubeconfig(path, c.URL, c.pki.caPEM, user, kp)
}

// writeKubeconfig writes a self-contained kubeconfig (credentials inline).
// It is plain text rather than clientcmd's writer: the format is stable and
// that keeps clientcmd's dependency tree out of this package.
func writeKubeconfig(path, server string, caPEM []byte, user string, kp keyPair) error {
	b64 := base64.StdEncoding.EncodeToString
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %q
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: %q
current-context: kubetest
`, server, b64(caPEM), user, b64(kp.CertPEM), b64(kp.KeyPEM), user)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
