package controlplane

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/e2e/probe"
)

// launcher runs the functions that must happen in the control plane's
// network namespace (starting a child, probing for free ports).
//
// Attached control planes use one goroutine locked to its OS thread for their
// whole life. That thread is switched into the namespace once, and it forks
// every child: PR_SET_PDEATHSIG fires when the *thread* that forked a child
// exits, not the process, and Go may retire threads, which would kill a
// healthy child. A thread that lives until Stop makes the signal mean exactly
// "the test binary died". Detached control planes have no death signal, so a
// short-lived thread per call (probe.InNetns) is enough.
type launcher struct {
	netns string // path; "" is the caller's namespace
	reqs  chan launchReq
	quit  chan struct{}
	once  sync.Once
}

type launchReq struct {
	f    func() error
	errc chan error
}

func newLauncher(netns string, persistent bool) *launcher {
	l := &launcher{netns: netns}
	if !persistent {
		return l
	}
	l.reqs = make(chan launchReq)
	l.quit = make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		// Never unlocked, on purpose: when this goroutine returns, the
		// runtime ends the thread instead of reusing it (it may be in
		// another namespace, and it is the children's death-signal parent).
		runtime.LockOSThread()
		setupErr := enterNetns(netns)
		ready <- setupErr
		for {
			select {
			case req := <-l.reqs:
				if setupErr != nil {
					req.errc <- setupErr
					continue
				}
				req.errc <- req.f()
			case <-l.quit:
				return
			}
		}
	}()
	<-ready
	return l
}

// enterNetns switches the calling (locked) thread into the namespace at path.
func enterNetns(path string) error {
	if path == "" {
		return nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	return nil
}

// run executes f in the namespace.
func (l *launcher) run(f func() error) error {
	if l.reqs == nil {
		return probe.InNetns(l.netns, f)
	}
	errc := make(chan error, 1)
	select {
	case l.reqs <- launchReq{f: f, errc: errc}:
		return <-errc
	case <-l.quit:
		return ErrStopped
	}
}

// close ends the persistent thread (after Stop has killed the children).
func (l *launcher) close() {
	if l.quit != nil {
		l.once.Do(func() { close(l.quit) })
	}
}

// netnsDialer returns a dial function whose sockets are created inside the
// namespace at path (nil for ""): how a client in another namespace reaches
// an apiserver bound to an address that exists only there.
func netnsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if path == "" {
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := probe.InNetns(path, func() error {
			var err error
			// The socket is created on this thread, hence in the namespace,
			// and stays there whichever thread uses it later.
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
