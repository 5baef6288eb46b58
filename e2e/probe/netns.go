package probe

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// CurrentNetns, passed as a namespace path, means "do not switch": the
// function runs in whatever network namespace the calling thread is in.
const CurrentNetns = ""

// NetnsError reports a failure to enter or leave a network namespace. It is
// always an internal error (bad path, missing privilege), never a verdict
// about connectivity.
type NetnsError struct {
	Path string
	Op   string // "open", "enter" or "restore"
	Err  error
}

func (e *NetnsError) Error() string {
	return fmt.Sprintf("netns %s %q: %v", e.Op, e.Path, e.Err)
}

func (e *NetnsError) Unwrap() error { return e.Err }

// InNetns runs f on a dedicated OS thread switched into the network namespace
// at path (a bind mount such as /run/netns/NAME or /proc/PID/ns/net), then
// switches the thread back. path == CurrentNetns runs f directly.
//
// Why this is enough for sockets: a socket belongs to the network namespace
// of the thread that created it, for its whole life. Sockets created by f
// synchronously (on f's goroutine, before f returns) therefore keep working
// in the target namespace when they are used later from any goroutine on any
// thread. f must not start goroutines that create sockets: those run on other
// threads, in the process's namespace.
//
// f runs on a fresh goroutine locked to its thread, so the caller's own
// thread and its LockOSThread state are never touched. If switching back
// fails, the goroutine exits while still locked, and the Go runtime then
// terminates the thread instead of reusing it in the wrong namespace. A panic
// in f is re-raised on the caller's goroutine.
func InNetns(path string, f func() error) error {
	if path == CurrentNetns {
		return f()
	}
	type outcome struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		var out outcome
		defer func() {
			if r := recover(); r != nil {
				out = outcome{panicked: true, value: r}
			}
			if restored {
				runtime.UnlockOSThread()
			}
			done <- out
		}()
		out.err, restored = runSwitched(path, f)
	}()
	out := <-done
	if out.panicked {
		panic(out.value)
	}
	return out.err
}

// runSwitched does the namespace dance on the current (locked) thread. It
// reports whether the thread is back in its original namespace. After a
// panic in f the caller never sees restored == true, so the thread is
// discarded even though the deferred Setns normally succeeded: cheap safety.
func runSwitched(path string, f func() error) (err error, restored bool) {
	// thread-self, not self: other threads of this process may be in other
	// namespaces right now (that is the whole point of this package).
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &NetnsError{Path: "/proc/thread-self/ns/net", Op: "open", Err: err}, true
	}
	defer unix.Close(orig)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &NetnsError{Path: path, Op: "open", Err: err}, true
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return &NetnsError{Path: path, Op: "enter", Err: err}, true
	}
	defer func() {
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
			restored = false
			if err == nil {
				err = &NetnsError{Path: path, Op: "restore", Err: rerr}
			}
			return
		}
		restored = true
	}()
	return f(), false
}
