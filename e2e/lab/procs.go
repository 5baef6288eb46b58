package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/e2e/probe"
)

// ProcessError reports a lab process that did not start or stopped early;
// Log is where its output went.
type ProcessError struct {
	What string // "server x/a", "agent node-1"
	Log  string
	Err  error
}

func (e *ProcessError) Error() string {
	msg := fmt.Sprintf("lab: %s: %v (log: %s)", e.What, e.Err, e.Log)
	if tail := logTail(e.Log, 8); tail != "" {
		msg += "\n" + tail
	}
	return msg
}

func (e *ProcessError) Unwrap() error { return e.Err }

// logTail returns the last n lines of a log file, indented, or "".
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  | " + strings.Join(lines, "\n  | ")
}

// running is a process this Lab value started: exited is closed once it
// has been reaped, with err its exit status.
type running struct {
	exited chan struct{}
	err    error
}

// startDetached starts args in a new session (it survives the lab command
// and ignores the terminal's signals), stdin from /dev/null, stdout and
// stderr appended to log. With netns set, the process is forked from a
// thread inside that namespace, so it starts there (like `ip netns exec`,
// without needing iproute2). extra become fds 3, 4, ... in the child.
func (l *Lab) startDetached(args []string, log, netns string, extra ...*os.File) (*Proc, *running, error) {
	lf, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("lab: log: %w", err)
	}
	defer lf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A socket or process belongs to the namespace of the thread that
	// creates it: InNetns runs Start (fork + exec) on a thread inside netns.
	if err := probe.InNetns(nsPathOrCurrent(netns), cmd.Start); err != nil {
		return nil, nil, fmt.Errorf("lab: start %s: %w", args[0], err)
	}
	// Read before anything reaps the child: until Wait, even a child that
	// already exited is a zombie whose /proc entry is still there.
	start, err := procStartTime(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, fmt.Errorf("lab: %s: %w", args[0], err)
	}
	r := &running{exited: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.exited)
	}()
	return &Proc{PID: cmd.Process.Pid, StartTime: start, Args: args, Log: log}, r, nil
}

func nsPathOrCurrent(name string) string {
	if name == "" {
		return probe.CurrentNetns
	}
	return netnsPath(name)
}

// procStat returns a process's state letter and start time, from
// /proc/<pid>/stat (the fields after the command name, which may itself
// contain spaces and parentheses).
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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

func procStartTime(pid int) (uint64, error) {
	_, st, err := procStat(pid)
	return st, err
}

// alive reports whether p still runs (a zombie does not count: it is dead
// and only waits for its parent).
func alive(p Proc) bool {
	state, start, err := procStat(p.PID)
	return err == nil && start == p.StartTime && state != 'Z'
}

// stopProcesses sends SIGTERM to every live process, waits up to grace,
// then SIGKILLs what is left and waits again. A lab process leads its own
// process group (Setsid), so the signal goes to the group: anything it
// started (a wrapper script's children) goes with it.
func stopProcesses(procs []Proc, grace time.Duration) []error {
	signal := func(sig syscall.Signal) []Proc {
		var live []Proc
		for _, p := range procs {
			if !alive(p) {
				continue
			}
			err := syscall.Kill(-p.PID, sig)
			if errors.Is(err, syscall.ESRCH) { // not a group leader
				err = syscall.Kill(p.PID, sig)
			}
			if err == nil || !errors.Is(err, syscall.ESRCH) {
				live = append(live, p)
			}
		}
		return live
	}
	wait := func(live []Proc, d time.Duration) []Proc {
		deadline := time.Now().Add(d)
		for len(live) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			live = slices.DeleteFunc(live, func(p Proc) bool { return !alive(p) })
		}
		return live
	}
	live := wait(signal(syscall.SIGTERM), grace)
	if len(live) == 0 {
		return nil
	}
	live = wait(signal(syscall.SIGKILL), 2*time.Second)
	var errs []error
	for _, p := range live {
		errs = append(errs, fmt.Errorf("lab: process %d (%s) survived SIGKILL", p.PID, strings.Join(p.Args, " ")))
	}
	return errs
}

// labCommands are the executable names of the processes a lab starts.
var labCommands = []string{"tabby", "tabbyctl", "etcd", "kube-apiserver"}

// strayProcesses finds lab processes (by executable name) that live inside
// one of the namespaces but are not in known: what a lab that crashed
// before recording them left. Processes of other programs are left alone.
func strayProcesses(namespaces []string, known []Proc) []Proc {
	inodes := map[uint64]bool{}
	for _, n := range namespaces {
		if ino := netnsInode(netnsPath(n)); ino != 0 {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || slices.ContainsFunc(known, func(p Proc) bool { return p.PID == pid }) {
			continue
		}
		if !inodes[netnsInode(fmt.Sprintf("/proc/%d/ns/net", pid))] {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !slices.Contains(labCommands, strings.TrimSpace(string(comm))) {
			continue
		}
		start, err := procStartTime(pid)
		if err != nil {
			continue
		}
		out = append(out, Proc{PID: pid, StartTime: start, Args: cmdline(pid)})
	}
	return out
}

func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// waitReadyLine reads the child's readiness pipe: the child writes one
// line ("ready" or an error) and closes it. EOF without a line means the
// child died.
func waitReadyLine(r *os.File, timeout time.Duration) (string, error) {
	if err := r.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// binaryNextTo returns name in the directory of exe.
func binaryNextTo(exe, name string) string { return filepath.Join(filepath.Dir(exe), name) }
