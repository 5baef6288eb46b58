package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Replica is one more kube-apiserver on the control plane's etcd, as an HA
// control plane runs several: another endpoint onto the same cluster
// state, serving while the primary (StopAPIServer) is down. Clients of one
// see the writes made through the other, resourceVersions included.
type Replica struct {
	// URL is https://<bind address>:<Port>.
	URL  string
	Port int
	// Config and Client are the admin's (system:masters), dialling from
	// inside the control plane's namespace like ControlPlane.Config.
	Config  *rest.Config
	Client  *kubernetes.Clientset
	Process Process
}

// StartReplica starts one more kube-apiserver with the primary's flags,
// certificates and etcd on port (0: a free one) of the bind address, in the
// control plane's namespace and process mode, records it in the state file
// and waits for its /readyz. It runs on its own: StopAPIServer and
// StartAPIServer leave it alone; StopReplica and Stop kill it. Its output
// goes to kube-apiserver-<port>.log in LogDir.
func (c *ControlPlane) StartReplica(ctx context.Context, port int) (*Replica, error) {
	c.mu.Lock()
	stopped, etcd := c.st.Stopped, c.etcd
	c.mu.Unlock()
	if stopped {
		return nil, ErrStopped
	}
	if etcd == nil || etcd.exited() {
		return nil, errors.New("controlplane: replica: etcd is not running")
	}
	var lastErr error
	for range startAttempts {
		p := port
		if p == 0 {
			ports, err := c.freePorts(c.st.BindAddress.String(), 1)
			if err != nil {
				return nil, fmt.Errorf("controlplane: replica: %w", err)
			}
			p = ports[0]
		}
		r, err := c.startReplica(ctx, p)
		if err == nil {
			return r, nil
		}
		lastErr = err
		var ee *ExitError
		if port != 0 || !errors.As(err, &ee) || !ee.addrInUse() {
			break
		}
	}
	return nil, fmt.Errorf("controlplane: replica: %w", lastErr)
}

func (c *ControlPlane) startReplica(ctx context.Context, port int) (*Replica, error) {
	url := "https://" + net.JoinHostPort(c.st.BindAddress.String(), strconv.Itoa(port))
	cfg := c.restConfigFor(url, c.admin)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	cmd := append([]string{c.Binaries.APIServer}, c.apiServerArgs(port)...)
	log := filepath.Join(c.LogDir, "kube-apiserver-"+strconv.Itoa(port)+".log")
	var started *proc
	p, err := c.runAPIServerLog(ctx, cmd, log, cs, func(p *proc) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if p == nil { // it did not come up: forget it
			c.replicas = slices.DeleteFunc(c.replicas, func(r *proc) bool { return r == started })
		} else {
			started = p
			c.replicas = append(c.replicas, p)
		}
		return c.save()
	})
	if err != nil {
		return nil, err
	}
	return &Replica{URL: url, Port: port, Config: cfg, Client: cs, Process: p.Process}, nil
}

// StopReplica kills a replica (SIGKILL, like a crash) and forgets it; one
// already gone is only forgotten.
func (c *ControlPlane) StopReplica(r *Replica) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.replicas, func(p *proc) bool { return p.PID == r.Process.PID && p.StartTime == r.Process.StartTime })
	if i < 0 {
		return fmt.Errorf("controlplane: no replica with pid %d", r.Process.PID)
	}
	if err := c.replicas[i].kill(); err != nil {
		return fmt.Errorf("controlplane: replica: %w", err)
	}
	c.replicas = slices.Delete(c.replicas, i, i+1)
	return c.save()
}

// Replicas returns the records of the running replicas.
func (c *ControlPlane) Replicas() []Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Process
	for _, r := range c.replicas {
		if !r.exited() {
			out = append(out, r.Process)
		}
	}
	return out
}
