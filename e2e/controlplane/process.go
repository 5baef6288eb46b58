package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a child as recorded in the state file: with the PID, the start
// time identifies it, so another process can stop it and a recycled PID is
// never signalled.
type Process struct {
	Name string `json:"name"` // "etcd", "kube-apiserver"
	PID  int    `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks after boot).
	StartTime uint64   `json:"startTime"`
	Args      []string `json:"args"`
	Log       string   `json:"log"`
}

// Alive reports whether the recorded process still runs (a zombie does not
// count: it is dead and only waits for its parent).
func (p Process) Alive() bool {
	state, start, err := procStat(p.PID)
	return err == nil && start == p.StartTime && state != 'Z'
}

// proc is a running child. cmd is nil for a process adopted from a state
// file (Open): then only its PID and start time are known.
type proc struct {
	Process
	cmd     *exec.Cmd
	done    chan struct{} // closed when reaped (cmd != nil only)
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
// was taken in the meantime (the free-port probe is inherently racy).
func (e *ExitError) addrInUse() bool {
	return strings.Contains(e.Log, "address already in use")
}

// startProc starts path with args, appending its output to logPath, in the
// control plane's namespace and process mode (see launcher).
func (c *ControlPlane) startProc(name, path string, args []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "=== %s start %s: %s %s\n", time.Now().Format(time.RFC3339Nano), name, path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if c.st.Detached {
		// A session of its own: it outlives this process and ignores the
		// terminal's signals. No PDEATHSIG, on purpose.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Setpgid:   true, // a group of its own, so kill(-pgid) reaches anything it forks
			Pdeathsig: syscall.SIGKILL,
		}
	}
	if err := c.launcher.run(cmd.Start); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// Read before anything reaps the child: until Wait, even a child that
	// already exited is a zombie whose /proc entry is still there.
	_, start, err := procStat(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{
		Process: Process{Name: name, PID: cmd.Process.Pid, StartTime: start, Args: append([]string{path}, args...), Log: logPath},
		cmd:     cmd,
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process is gone.
func (p *proc) exited() bool {
	if p.cmd == nil {
		return !p.Alive()
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an early exit, with the tail of the log.
func (p *proc) exitError() *ExitError {
	return &ExitError{Name: p.Name, Err: p.waitErr, Log: tailFile(p.Log, 30)}
}

// kill sends SIGKILL to the whole process group and waits until the process
// is gone. SIGKILL rather than SIGTERM: tests model a crash, state lives on
// throwaway storage, and a graceful apiserver shutdown costs seconds.
func (p *proc) kill() error {
	if p.exited() {
		return nil
	}
	if p.cmd == nil && !p.Alive() { // checked right before signalling: never a recycled PID
		return nil
	}
	err := syscall.Kill(-p.PID, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) { // not a group leader
		err = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	const grace = 30 * time.Second
	if p.cmd != nil {
		select {
		case <-p.done:
			return nil
		case <-time.After(grace):
			return fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.Name, p.PID, grace)
		}
	}
	for deadline := time.Now().Add(grace); p.Alive(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still alive %v after SIGKILL", p.Name, p.PID, grace)
		}
	}
	return nil
}

// procStat returns a process's state letter and start time from
// /proc/<pid>/stat (the fields after the command name, which may itself
// contain spaces and parentheses).
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return f[0][0], start, nil
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

// TailLog is tailFile for callers that show a component's log on failure.
func TailLog(path string, n int) string { return tailFile(path, n) }

// freePorts returns n distinct TCP ports on host that were free a moment
// ago, probed in the control plane's namespace. Holding all listeners until
// every port is picked keeps them distinct; a start-up that loses the race
// to another process is retried by the caller.
func (c *ControlPlane) freePorts(host string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	err := c.launcher.run(func() error {
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for range n {
			l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				return fmt.Errorf("find a free port: %w", err)
			}
			ls = append(ls, l)
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
		return nil
	})
	return ports, err
}
