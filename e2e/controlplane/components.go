package controlplane

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

// AdminUser is the user name of the admin credentials (group system:masters).
const AdminUser = "tabby-admin"

// writePKI generates this control plane's keys and writes them under Dir.
func (c *ControlPlane) writePKI() error {
	p, err := newPKI()
	if err != nil {
		return err
	}
	serviceIP := c.st.ServiceCIDR.Masked().Addr().Next() // the kubernetes Service's ClusterIP
	serving, err := p.serving(net.IP(serviceIP.AsSlice()), net.IP(c.st.BindAddress.AsSlice()))
	if err != nil {
		return err
	}
	admin, err := p.client(AdminUser, "system:masters")
	if err != nil {
		return err
	}
	saPriv, saPub, err := serviceAccountKey()
	if err != nil {
		return err
	}
	caKey, err := ecKeyPEM(p.caKey)
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	c.pki, c.admin = p, admin
	return writeFiles(c.Dir, map[string][]byte{
		caCertFile:      p.caPEM,
		caKeyFile:       caKey,
		"apiserver.crt": serving.CertPEM,
		"apiserver.key": serving.KeyPEM,
		"sa.key":        saPriv,
		"sa.pub":        saPub,
		adminCertFile:   admin.CertPEM,
		adminKeyFile:    admin.KeyPEM,
	})
}

// startEtcd starts a single-member etcd on two free loopback ports of the
// control plane's namespace.
func (c *ControlPlane) startEtcd(ctx context.Context) error {
	dataDir := filepath.Join(c.st.DataDir, "etcd")
	var lastErr error
	for range startAttempts {
		ports, err := c.freePorts("127.0.0.1", 2)
		if err != nil {
			return err
		}
		// A failed attempt may have initialised the member with other peer
		// URLs; etcd refuses to start on such a directory.
		if err := os.RemoveAll(dataDir); err != nil {
			return fmt.Errorf("reset etcd data dir: %w", err)
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		args := []string{
			"--name=kubetest",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			"--initial-cluster-state=new",
			// The state is disposable: skipping fsync makes etcd as fast on
			// disk as on tmpfs and keeps a busy CI disk from stalling it.
			"--unsafe-no-fsync",
			"--log-level=warn",
		}
		p, err := c.startProc("etcd", c.Binaries.Etcd, args, filepath.Join(c.LogDir, "etcd.log"))
		if err != nil {
			return err
		}
		// Recorded before the wait: a launcher that dies meanwhile leaves a
		// record another process can stop it from.
		if err := c.setProc(&c.etcd, p); err != nil {
			_ = p.kill()
			return err
		}
		hc := &http.Client{Transport: &http.Transport{DialContext: netnsDialer(c.st.Netns), DisableKeepAlives: true}}
		err = waitReady(ctx, p, 30*time.Second, func(ctx context.Context) error {
			return etcdHealthy(ctx, hc, client)
		})
		if err == nil {
			c.mu.Lock()
			c.st.EtcdURL, c.EtcdURL = client, client
			err := c.save()
			c.mu.Unlock()
			return err
		}
		_ = p.kill()
		_ = c.setProc(&c.etcd, nil)
		lastErr = err
		var ee *ExitError
		if !errors.As(err, &ee) || !ee.addrInUse() {
			break
		}
	}
	return fmt.Errorf("start etcd: %w", lastErr)
}

func etcdHealthy(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
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

// startAPIServerFresh starts kube-apiserver on port (0: a free one,
// retrying if it is taken under it) and builds the admin clients.
func (c *ControlPlane) startAPIServerFresh(ctx context.Context, port int) error {
	var lastErr error
	for range startAttempts {
		p := port
		if p == 0 {
			ports, err := c.freePorts(c.st.BindAddress.String(), 1)
			if err != nil {
				return err
			}
			p = ports[0]
		}
		if err := c.setEndpoint(p); err != nil {
			return err
		}
		cmd := append([]string{c.Binaries.APIServer}, c.apiServerArgs(p)...)
		c.mu.Lock()
		c.st.APIServerCommand = cmd
		c.mu.Unlock()
		_, err := c.runAPIServer(ctx, cmd, c.Client, func(p *proc) error { return c.setProc(&c.apiserver, p) })
		if err == nil {
			return nil
		}
		lastErr = err
		var ee *ExitError
		if port != 0 || !errors.As(err, &ee) || !ee.addrInUse() {
			break
		}
	}
	return lastErr
}

// setEndpoint fixes the port and derives the URL, admin rest.Config,
// clientset and kubeconfig from it.
func (c *ControlPlane) setEndpoint(port int) error {
	c.st.Port = port
	c.URL = "https://" + net.JoinHostPort(c.st.BindAddress.String(), strconv.Itoa(port))
	c.st.URL = c.URL
	c.Config = c.restConfig(c.admin)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	c.Client = cs
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return writeKubeconfig(c.Kubeconfig, c.URL, c.pki.caPEM, AdminUser, c.admin)
}

// apiServerArgs is kube-apiserver's command line for port.
func (c *ControlPlane) apiServerArgs(port int) []string {
	f := func(name string) string { return filepath.Join(c.Dir, name) }
	args := []string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=" + c.st.BindAddress.String(),
		"--advertise-address=" + c.st.BindAddress.String(),
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + f("apiserver-certs"), // unused with explicit certs; keeps writes in Dir
		"--tls-cert-file=" + f("apiserver.crt"),
		"--tls-private-key-file=" + f("apiserver.key"),
		"--client-ca-file=" + f(caCertFile),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=" + c.st.ServiceCIDR.String(),
		"--authorization-mode=" + c.st.AuthorizationMode,
		// No controller manager mints service-account tokens, so the plugin
		// would reject every pod that does not opt out.
		"--disable-admission-plugins=ServiceAccount",
		// The bind address is no endpoint a pod could use, and a restarted
		// apiserver must not fight over the kubernetes Endpoints object.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	return append(args, c.st.ExtraAPIServerArgs...)
}

// setProc records p (nil: none) as a component's process and saves the
// state; callers do not hold mu.
func (c *ControlPlane) setProc(slot **proc, p *proc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	*slot = p
	return c.save()
}

// runAPIServer starts kube-apiserver with cmd, records it with record
// (before waiting: see startEtcd; nil again if it does not come up) and
// waits for /readyz, asked through client.
func (c *ControlPlane) runAPIServer(ctx context.Context, cmd []string, client kubernetes.Interface, record func(*proc) error) (*proc, error) {
	return c.runAPIServerLog(ctx, cmd, filepath.Join(c.LogDir, "kube-apiserver.log"), client, record)
}

func (c *ControlPlane) runAPIServerLog(ctx context.Context, cmd []string, log string, client kubernetes.Interface,
	record func(*proc) error) (*proc, error) {
	p, err := c.startProc("kube-apiserver", cmd[0], cmd[1:], log)
	if err != nil {
		return nil, err
	}
	if err := record(p); err != nil {
		_ = p.kill()
		return nil, err
	}
	rc := client.Discovery().RESTClient()
	err = waitReady(ctx, p, c.st.ReadyTimeout, func(ctx context.Context) error {
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, body)
		}
		return nil
	})
	if err != nil {
		_ = p.kill()
		return nil, errors.Join(fmt.Errorf("start kube-apiserver: %w", err), record(nil))
	}
	return p, nil
}

// waitReady polls probe until it succeeds, the process exits (an
// *ExitError), ctx ends or timeout passes (the last probe error).
func waitReady(ctx context.Context, p *proc, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	interval := 20 * time.Millisecond
	for {
		if p.exited() {
			return p.exitError()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := probe(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %v: %w\n--- last lines of its log ---\n%s",
				p.Name, timeout, errors.Join(err, ctx.Err()), tailFile(p.Log, 30))
		}
		select {
		case <-p.done:
		case <-ctx.Done():
		case <-time.After(interval):
		}
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// restConfig is a client configuration for the holder of kp.
func (c *ControlPlane) restConfig(kp keyPair) *rest.Config { return c.restConfigFor(c.URL, kp) }

// restConfigFor is restConfig for the kube-apiserver at host.
func (c *ControlPlane) restConfigFor(host string, kp keyPair) *rest.Config {
	return &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: kp.CertPEM,
			KeyData:  kp.KeyPEM,
		},
		Dial: netnsDialer(c.st.Netns),
		// client-go's defaults (5 QPS, burst 10) would make callers that
		// create hundreds of objects wait on the client rather than the server.
		QPS:       500,
		Burst:     1000,
		UserAgent: "tabby-kubetest",
	}
}

// UserConfig mints a client certificate for user in groups (CN and O, as
// kube-apiserver's x509 authenticator reads them) and returns a rest.Config
// for it, so components can be run with the RBAC they ship.
func (c *ControlPlane) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := c.pki.client(user, groups...)
	if err != nil {
		return nil, err
	}
	return c.restConfig(kp), nil
}

// UserKubeconfig is UserConfig written as a kubeconfig file in Dir, for
// components run as separate processes. It returns the file's path.
func (c *ControlPlane) UserKubeconfig(user string, groups ...string) (string, error) {
	safe := strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, user)
	path := filepath.Join(c.Dir, "kubeconfig-"+safe)
	return path, c.WriteKubeconfig(path, "", user, groups...)
}

// WriteKubeconfig mints a client certificate for user in groups and writes
// a self-contained kubeconfig for it at path (owner-only) with server as
// the API address ("" = URL): a forwarder's or another network's view of
// the same apiserver (its certificate names 127.0.0.1 and BindAddress).
func (c *ControlPlane) WriteKubeconfig(path, server, user string, groups ...string) error {
	if server == "" {
		server = c.URL
	}
	kp, err := c.pki.client(user, groups...)
	if err != nil {
		return err
	}
	return writeKubeconfig(path, server, c.pki.caPEM, user, kp)
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
