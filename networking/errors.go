package networking

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error the package returns wraps one of these or a
// kernel error (an errno) inside a *StepError, so callers decide with
// errors.Is / errors.As and never by matching strings.
var (
	// ErrInvalidSpec: the PodSpec itself is wrong (a name longer than 15
	// bytes, a duplicate or unusable IP, a bad MTU). Nothing was touched.
	ErrInvalidSpec = errors.New("invalid pod interface spec")
	// ErrNetnsNotFound: a namespace path does not exist or is not a network
	// namespace (a runtime may leave an empty file behind after unmounting).
	ErrNetnsNotFound = errors.New("network namespace not found")
	// ErrNetnsExists: NewNetns was asked for a name already in /run/netns.
	ErrNetnsExists = errors.New("network namespace already exists")
	// ErrNetnsClosed: a Netns method was called after Close or Delete.
	ErrNetnsClosed = errors.New("network namespace handle is closed")
	// ErrInterfaceExists: an interface name the spec needs is held by a
	// device that is not this pod's veth (a pod-side eth0 from another
	// plugin, a host device of another type).
	ErrInterfaceExists = errors.New("interface name held by another device")
	// ErrAddressInUse: a pod IP is already routed to another interface of
	// the node, or is an address of the node itself.
	ErrAddressInUse = errors.New("address in use by another interface")
	// ErrCheckFailed: CheckPod found the kernel state differs from the spec;
	// the *CheckError lists every difference.
	ErrCheckFailed = errors.New("pod interface does not match its spec")
)

// StepError names the step that failed, the interface and the namespace it
// worked on, and wraps the cause.
type StepError struct {
	Step      string // e.g. "create veth", "set host routes"
	Interface string // the interface the step worked on, "" if none
	Netns     string // namespace path, "" if the step is not about one
	Err       error
}

func (e *StepError) Error() string {
	var b strings.Builder
	b.WriteString("networking: ")
	b.WriteString(e.Step)
	if e.Interface != "" {
		b.WriteString(" ")
		b.WriteString(e.Interface)
	}
	if e.Netns != "" {
		b.WriteString(" (netns ")
		b.WriteString(e.Netns)
		b.WriteString(")")
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

// CheckError lists every way the kernel state differs from a PodSpec, in a
// fixed order (host side, pod side, then routes and sysctls).
type CheckError struct {
	Interface string
	Problems  []string
}

func (e *CheckError) Error() string {
	return "networking: check " + e.Interface + ": " + strings.Join(e.Problems, "; ")
}

// Unwrap makes errors.Is(err, ErrCheckFailed) true.
func (e *CheckError) Unwrap() error { return ErrCheckFailed }
