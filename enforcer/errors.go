package enforcer

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrKernel: the kernel rejected a transaction (it then applied none
	// of it). The error chain also holds the errno (errors.Is(err,
	// unix.ENOENT) etc.) and, via errors.As, a *KernelError naming the
	// operation.
	ErrKernel = errors.New("kernel rejected the nftables transaction")
	// ErrInvalidTable: the desired table cannot be written as given (a
	// dangling reference, a value of the wrong type, a name too long...).
	// Nothing was sent; the previous state stays in force.
	ErrInvalidTable = errors.New("invalid table")
	// ErrTransport: netlink itself failed (socket, timeout, short read). The
	// outcome of the transaction is unknown, so the next Sync rewrites all.
	ErrTransport = errors.New("netlink transport failure")
	// ErrClosed: the Enforcer was closed.
	ErrClosed = errors.New("enforcer closed")
)

// SyncError is returned by Sync and Reconcile when a write failed. Full says
// whether the failed transaction was a full replace. After any SyncError the
// next Sync is a full replace (see NeedsResync).
type SyncError struct {
	Full bool
	Err  error
}

func (e *SyncError) Error() string {
	kind := "incremental"
	if e.Full {
		kind = "full"
	}
	return fmt.Sprintf("enforcer: %s sync: %v", kind, e.Err)
}

func (e *SyncError) Unwrap() error { return e.Err }

// KernelError is one message of a transaction that the kernel refused. Op
// describes the message ("add rule to chain pol-x", "delete element from set
// s"); Message is the kernel's extended ack text, if any.
type KernelError struct {
	Op      string
	Message string
	Err     error // the errno
}

func (e *KernelError) Error() string {
	s := e.Op + ": " + e.Err.Error()
	if e.Message != "" {
		s += " (" + e.Message + ")"
	}
	return s
}

func (e *KernelError) Unwrap() []error { return []error{ErrKernel, e.Err} }

// IsKernel reports whether err is (or wraps) a kernel rejection.
func IsKernel(err error) bool { return errors.Is(err, ErrKernel) }

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidTable}, a...)...)
}
