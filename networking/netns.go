//go:build linux

package networking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netnsRunDir is where named namespaces live, shared with `ip netns`.
const netnsRunDir = "/run/netns"

// Netns is an open network namespace: one created by NewNetns (a bind mount
// under /run/netns, like `ip netns add`) or one opened by path. It is for
// tests and the lab; SetupPod and friends take paths.
//
// No method moves the calling goroutine: work inside the namespace runs on a
// fresh goroutine whose OS thread is locked and never unlocked, so the Go
// runtime destroys that thread afterwards instead of reusing a thread that
// sits in another namespace.
type Netns struct {
	name  string
	path  string
	fd    int
	owned bool // created by NewNetns: Delete removes the bind mount
}

// NewNetns creates a named network namespace at /run/netns/<name>. An empty
// name picks a random "tabby-<hex>" one (a throwaway namespace). The caller
// must Delete it.
func NewNetns(name string) (*Netns, error) {
	if name == "" {
		b := make([]byte, 5)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("networking: netns name: %w", err)
		}
		name = "tabby-" + hex.EncodeToString(b)
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 200 {
		return nil, &StepError{Step: "create netns", Netns: name, Err: fmt.Errorf("%w: bad namespace name %q", ErrInvalidSpec, name)}
	}
	path := filepath.Join(netnsRunDir, name)
	fail := func(err error) (*Netns, error) {
		return nil, &StepError{Step: "create netns", Netns: path, Err: err}
	}
	if err := os.MkdirAll(netnsRunDir, 0o755); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("%w: %w", ErrNetnsExists, err))
		}
		return fail(err)
	}
	_ = f.Close()
	err = onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		_ = os.Remove(path)
		return fail(err)
	}
	fd, err := openNetnsFd(path)
	if err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return fail(err)
	}
	return &Netns{name: name, path: path, fd: fd, owned: true}, nil
}

// OpenNetns opens an existing namespace by path (/run/netns/x, /proc/<pid>/ns/net).
// Errors wrap ErrNetnsNotFound when the path is absent or not a network namespace.
func OpenNetns(path string) (*Netns, error) {
	fd, err := openNetnsFd(path)
	if err != nil {
		return nil, &StepError{Step: "open netns", Netns: path, Err: err}
	}
	return &Netns{name: filepath.Base(path), path: path, fd: fd}, nil
}

// Name is the namespace's name (the base of its path).
func (n *Netns) Name() string { return n.name }

// Path is the path the namespace can be opened by, e.g. for PodSpec.
func (n *Netns) Path() string { return n.path }

// Fd is the open namespace file descriptor, -1 after Close.
func (n *Netns) Fd() int { return n.fd }

// Do runs fn on a new goroutine locked to an OS thread that has entered the
// namespace, and waits for it. Sockets fn creates stay in the namespace and
// may be used from any goroutine afterwards. A panic in fn becomes an error.
func (n *Netns) Do(fn func() error) error {
	if n.fd < 0 {
		return ErrNetnsClosed
	}
	return inNetns(n.fd, fn)
}

// Handle returns a netlink handle whose socket lives in the namespace.
// The caller closes it.
func (n *Netns) Handle() (*netlink.Handle, error) {
	if n.fd < 0 {
		return nil, ErrNetnsClosed
	}
	return handleAt(n.fd)
}

// WaitLinkLocal waits until interface ifname in the namespace has a usable
// IPv6 link-local address (see waitLinkLocal for why this matters). The lab
// calls it for underlay veths before sending IPv6 across them; bring them
// up with net.ipv6.conf.<if>.accept_dad=0 so the wait is short.
func (n *Netns) WaitLinkLocal(ctx context.Context, ifname string) error {
	if n.fd < 0 {
		return ErrNetnsClosed
	}
	h, err := handleAt(n.fd)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		return &StepError{Step: "wait for link-local address", Interface: ifname, Netns: n.path, Err: err}
	}
	if err := waitLinkLocal(ctx, h, l); err != nil {
		return &StepError{Step: "wait for link-local address", Interface: ifname, Netns: n.path, Err: err}
	}
	return nil
}

// SetSysctl writes a sysctl inside the namespace. key is dotted
// ("net.ipv4.ip_forward") or a path under /proc/sys ("net/ipv4/conf/eth0.1/forwarding"),
// the latter being needed for interface names that contain dots.
func (n *Netns) SetSysctl(key, value string) error {
	if n.fd < 0 {
		return ErrNetnsClosed
	}
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return writeSysctls(n.fd, []sysctl{{path: p, value: value}}, false)
}

// Sysctl reads a sysctl inside the namespace, trimmed of white space.
func (n *Netns) Sysctl(key string) (string, error) {
	if n.fd < 0 {
		return "", ErrNetnsClosed
	}
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	vals, err := readSysctls(n.fd, []string{p})
	if err != nil {
		return "", err
	}
	return vals[p], nil
}

// Close releases the file descriptor; the namespace lives on while it is
// mounted or used. Close is idempotent.
func (n *Netns) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}

// Delete closes the namespace and, if NewNetns created it, removes its bind
// mount, so the kernel destroys it (and the interfaces inside it) once
// nothing else holds it. Delete is idempotent.
func (n *Netns) Delete() error {
	err := n.Close()
	if !n.owned {
		return err
	}
	if uerr := unix.Unmount(n.path, unix.MNT_DETACH); uerr != nil &&
		!errors.Is(uerr, unix.EINVAL) && !errors.Is(uerr, unix.ENOENT) {
		err = errors.Join(err, fmt.Errorf("unmount %s: %w", n.path, uerr))
	}
	if rerr := os.Remove(n.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return &StepError{Step: "delete netns", Netns: n.path, Err: err}
	}
	return nil
}

// openNetnsFd opens path and makes sure it is a network namespace: a CNI
// runtime may leave the mount point behind as an empty file.
func openNetnsFd(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%w: %w", ErrNetnsNotFound, err)
		}
		return -1, err
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		_ = unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("namespace type %#x", typ)
		}
		return -1, fmt.Errorf("%w: %s is not a network namespace: %w", ErrNetnsNotFound, path, err)
	}
	return fd, nil
}

// sameNetns reports whether two namespace fds are the same namespace.
func sameNetns(a, b int) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		return false, err
	}
	if err := unix.Fstat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// onLockedThread runs fn on a new goroutine locked to its OS thread and
// waits. The thread is never unlocked: when the goroutine ends the runtime
// terminates it, so whatever fn did to the thread (setns, unshare) cannot
// leak into other goroutines, not even when restoring would have failed.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic on namespace thread: %v", r)
			}
		}()
		errc <- fn()
	}()
	return <-errc
}

// inNetns runs fn inside the namespace fd on a throwaway thread.
func inNetns(fd int, fn func() error) error {
	return onLockedThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return fn()
	})
}

// handleAt opens a NETLINK_ROUTE handle inside the namespace. The socket is
// created on a throwaway thread (netlink.NewHandleAt would switch the
// caller's thread and back), and then serves from any thread.
func handleAt(fd int) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := inNetns(fd, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return h, nil
}

// sysctl is one setting; path is relative to /proc/sys, '/'-separated, so
// interface names with dots need no escaping.
type sysctl struct {
	path  string
	value string
}

func (s sysctl) String() string { return s.path + "=" + s.value }

// sysctlPath turns a dotted key into a path under /proc/sys; a key that
// already contains '/' is taken as a path.
func sysctlPath(key string) (string, error) {
	p := key
	if !strings.Contains(key, "/") {
		p = strings.ReplaceAll(key, ".", "/")
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("%w: bad sysctl key %q", ErrInvalidSpec, key)
		}
	}
	return p, nil
}

// writeSysctls sets the values inside the namespace in one thread switch.
// With onlyIfDifferent it reads first and skips equal values: writing
// net.ipv6.conf.all.forwarding, even with its current value, walks every
// interface of the node.
func writeSysctls(fd int, want []sysctl, onlyIfDifferent bool) error {
	return inNetns(fd, func() error {
		for _, s := range want {
			full := filepath.Join("/proc/sys", s.path)
			if onlyIfDifferent {
				cur, err := os.ReadFile(full)
				if err != nil {
					return fmt.Errorf("sysctl %s: %w", s.path, err)
				}
				if strings.TrimSpace(string(cur)) == s.value {
					continue
				}
			}
			if err := os.WriteFile(full, []byte(s.value), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", s, err)
			}
		}
		return nil
	})
}

// readSysctls reads the values inside the namespace in one thread switch.
func readSysctls(fd int, paths []string) (map[string]string, error) {
	out := make(map[string]string, len(paths))
	err := inNetns(fd, func() error {
		for _, p := range paths {
			b, err := os.ReadFile(filepath.Join("/proc/sys", p))
			if err != nil {
				return fmt.Errorf("sysctl %s: %w", p, err)
			}
			out[p] = strings.TrimSpace(string(b))
		}
		return nil
	})
	return out, err
}
