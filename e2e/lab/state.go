package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// stateVersion is the format of lab.json; Open refuses others.
const stateVersion = 1

// Files and directories under the state directory.
const (
	stateFile    = "lab.json"
	lockFile     = "lock"
	manifestsDir = "manifests"
	manifestFile = "lab.yaml"
	logsDir      = "logs"
)

// State is everything a lab created: lab.json. Up writes it as it goes, so
// a crashed Up leaves a record Down can clean up from.
type State struct {
	Version  int       `json:"version"`
	Name     string    `json:"name"`
	StateDir string    `json:"stateDir"`
	Created  time.Time `json:"created"`
	// Ready is set when Up completed.
	Ready bool `json:"ready"`
	// Namespaces are the names (under /run/netns) of every namespace
	// created, in creation order.
	Namespaces []string      `json:"namespaces"`
	Underlay   UnderlayState `json:"underlay"`
	Nodes      []NodeState   `json:"nodes"`
	Pods       []PodState    `json:"pods"`
	// Manifests is the file every agent reads (its directory is the
	// agents' --manifests).
	Manifests string `json:"manifests"`
	// Tabby, Tabbyctl and AgentArgs are Config's: what Open needs to
	// start a pod server or an agent again from another process.
	Tabby     string   `json:"tabby,omitempty"`
	Tabbyctl  string   `json:"tabbyctl,omitempty"`
	AgentArgs []string `json:"agentArgs,omitempty"`
	// Kubernetes is set in Kubernetes mode: the control plane and the
	// forwarder. Manifests is then the lab's record of what it created
	// through the API (the agents read the API).
	Kubernetes *KubeState `json:"kubernetes,omitempty"`
}

// UnderlayState is the namespace holding the bridge between the nodes.
type UnderlayState struct {
	Netns string       `json:"netns"`
	IPs   []netip.Addr `json:"ips"` // of the bridge
}

// NodeState is one node.
type NodeState struct {
	Name        string       `json:"name"` // node-<i>: the agent's --node
	Netns       string       `json:"netns"`
	UnderlayIPs []netip.Addr `json:"underlayIPs"`
	PodCIDR     netip.Prefix `json:"podCIDR"`
	// HealthAddr is the agent's /readyz and /status, inside Netns.
	HealthAddr string `json:"healthAddr"`
	// Kubeconfig is the agent's, in Kubernetes mode: deploy's service
	// account identity, the API server's underlay URL.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Agent      *Proc  `json:"agent,omitempty"`
}

// PodState is one pod.
type PodState struct {
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	Node      string       `json:"node"`
	Netns     string       `json:"netns"`
	HostIf    string       `json:"hostIf"`
	IPs       []netip.Addr `json:"ips"`   // primary first
	Ports     []string     `json:"ports"` // served: "80/TCP"
	Server    *Proc        `json:"server,omitempty"`
}

// Proc is a detached process the lab started.
type Proc struct {
	PID int `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks after boot):
	// with the PID it identifies the process, so a recycled PID is never
	// signalled.
	StartTime uint64   `json:"startTime"`
	Args      []string `json:"args"`
	Log       string   `json:"log"`
}

// StateFile is the path of a state directory's lab.json.
func StateFile(dir string) string { return filepath.Join(dir, stateFile) }

// NoLabError says a state directory holds no lab.
type NoLabError struct{ Dir string }

func (e *NoLabError) Error() string {
	return fmt.Sprintf("lab: no lab in %s (run tabbyctl lab up)", e.Dir)
}

// loadState reads lab.json; a missing file is a *NoLabError.
func loadState(dir string) (*State, error) {
	b, err := os.ReadFile(StateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, &NoLabError{Dir: dir}
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	st := &State{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", StateFile(dir), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("lab: %s: version %d, want %d", StateFile(dir), st.Version, stateVersion)
	}
	return st, nil
}

// writeFileAtomic writes a file next to its final name, then renames it,
// so readers (the agents' datastore, another lab command) never see half.
// The temporary name starts with a dot: the agents' datastore ignores it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}

func saveState(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	if err := writeFileAtomic(StateFile(st.StateDir), append(b, '\n')); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return nil
}

// lockDir takes the state directory's exclusive lock: two lab commands on
// the same directory never build or tear down at the same time. The
// returned function releases it.
func lockDir(ctx context.Context, dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lab: lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lab: another lab command holds %s: %w", f.Name(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Down tears down the lab of a state directory: see the package
// documentation. Besides the recorded lab's, the leftover namespaces of a
// lab called name are removed too ("" = none, or DefaultName when there is
// no state file). Absent things are fine: Down is idempotent.
func Down(ctx context.Context, stateDir, name string) error {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	unlock, err := lockDir(ctx, stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	return down(stateDir, name)
}

// down is Down with the lock held.
func down(stateDir, name string) error {
	st, err := loadState(stateDir)
	var nolab *NoLabError
	var errs []error
	switch {
	case errors.As(err, &nolab):
		st = &State{}
	case err != nil:
		// A corrupt record must not keep the namespaces alive: clean up
		// by name and report it.
		errs = append(errs, err)
		st = &State{}
	}
	// The recorded lab's leftovers, and those of the name asked for (Up
	// passes the name it is about to use); DefaultName if neither is known.
	var names []string
	for _, n := range []string{st.Name, name} {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		names = []string{DefaultName}
	}
	namespaces := slices.Clone(st.Namespaces)
	for _, n := range names {
		left, err := leftoverNamespaces(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ns := range left {
			if !slices.Contains(namespaces, ns) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	var procs []Proc
	for _, p := range st.Pods {
		if p.Server != nil {
			procs = append(procs, *p.Server)
		}
	}
	for _, n := range st.Nodes {
		if n.Agent != nil {
			procs = append(procs, *n.Agent)
		}
	}
	if ks := st.Kubernetes; ks != nil && ks.Forwarder != nil {
		procs = append(procs, *ks.Forwarder)
	}
	// The control plane's processes are stopped through its own record,
	// and any its record lacks (a crash between start and record) are
	// found as strays in its namespace.
	if st.Kubernetes != nil {
		errs = append(errs, stopKube(st.Kubernetes)...)
	}
	procs = append(procs, strayProcesses(namespaces, procs)...)
	errs = append(errs, stopProcesses(procs, 5*time.Second)...)
	// Pods first, the underlay last: the reverse of creation.
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := deleteNetns(namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range []string{StateFile(stateDir), filepath.Join(stateDir, manifestsDir)} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		}
	}
	return errors.Join(errs...)
}

// leftoverNamespaces lists /run/netns entries named like a lab called name.
func leftoverNamespaces(name string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	re := leftoverRE(name)
	var out []string
	for _, e := range ents {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	// Underlay first, nodes, then pods: the creation order, which down
	// reverses.
	slices.SortStableFunc(out, func(a, b string) int { return leftoverRank(name, a) - leftoverRank(name, b) })
	return out, nil
}

func leftoverRank(name, ns string) int {
	switch {
	case ns == underlayNetnsName(name):
		return 0
	case ns == cpNetnsName(name):
		return 1
	case len(ns) > len(name)+5 && ns[len(name):len(name)+6] == "-node-":
		return 2
	}
	return 3
}
