package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one running child (etcd or kube-apiserver). Its stdout and stderr
// go to a log file that survives restarts of the same component, so a failed
// test can show what every incarnation said.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been reaped
	waitErr error         // valid after done is closed
}

// ExitError reports that a child exited while it was expected to run (during
// start-up or while waiting for readiness). Log holds the tail of its output.
type ExitError struct {
	Name string
	Err  error
	Log  string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited early: %v\n--- last lines of its log ---\n%s", e.Name, e.Err, e.Log)
}

func (e *ExitError) Unwrap() error { return e.Err }

// addrInUse reports whether the child died because a port it was told to use
// was taken in the meantime (the free-port probe below is inherently racy).
func (e *ExitError) addrInUse() bool {
	return strings.Contains(e.Log, "address already in use")
}

// spawnReq asks the spawner goroutine to start cmd.
type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawn starts cmd from one goroutine that is locked to its OS thread for the
// life of the process. PR_SET_PDEATHSIG fires when the *thread* that forked a
// child exits, not the process: Go may retire threads (a goroutine that exits
// while locked takes its thread with it), which would kill a healthy child.
// A thread that never exits makes the signal mean exactly "the test binary
// died", so a timed-out or crashed `go test` leaves no etcd or apiserver behind.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked, on purpose
			for req := range spawnCh {
				req.errc <- req.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnCh <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
}

// startProc starts path with args in its own process group, appending its
// output to logPath.
func startProc(name, path string, args []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	fmt.Fprintf(logf, "=== %s start %s: %s %s\n", time.Now().Format(time.RFC3339Nano), name, path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true, // a group of its own, so kill(-pgid) reaches anything it forks
		Pdeathsig: syscall.SIGKILL,
	}
	if err := spawn(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already been reaped.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an early exit, with the tail of the log.
func (p *proc) exitError() *ExitError {
	return &ExitError{Name: p.name, Err: p.waitErr, Log: tailFile(p.logPath, 30)}
}

// kill sends SIGKILL to the whole process group and waits until the leader is
// reaped. SIGKILL rather than SIGTERM: the tests model a crash, state lives on
// a throwaway tmpfs, and a graceful apiserver shutdown costs seconds per test.
func (p *proc) kill() error {
	if p.exited() {
		return nil
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s process group %d: %w", p.name, pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) not reaped 30s after SIGKILL", p.name, pid)
	}
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago. Holding all listeners until every port is picked keeps them distinct;
// a start-up that loses the race to another process is retried by the caller.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
