package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// InterfaceFinder finds the host-side interface of a local pod: the one the
// node routes the pod's address to (policy-only mode, under another CNI).
type InterfaceFinder interface {
	// InterfaceFor returns the name of the interface that addr is routed to
	// directly (no gateway) in the node's network namespace. When there is no
	// such route yet, the error wraps ErrNoInterface.
	InterfaceFor(addr netip.Addr) (string, error)
}

// InterfaceWatcher is optionally implemented by an InterfaceFinder that can
// tell when routes or links change: the agent then re-resolves every local
// pod at once instead of waiting for its recheck timer.
type InterfaceWatcher interface {
	// WatchInterfaces calls changed (which must not block) after any route or
	// link change, until ctx ends. It returns when it cannot watch.
	WatchInterfaces(ctx context.Context, changed func()) error
}

// ErrNoInterface means no interface routes to the pod's address (yet).
var ErrNoInterface = errors.New("no interface routes to the pod")

// InterfaceConflictError is a local pod whose interface another local pod
// already holds: two endpoints cannot share one verdict map key, so the later
// one waits (published as remote) until the conflict resolves.
type InterfaceConflictError struct {
	Interface string
	Holder    string // the pod holding it, namespace/name
}

func (e *InterfaceConflictError) Error() string {
	return fmt.Sprintf("interface %s already belongs to pod %s", e.Interface, e.Holder)
}

// findInterface resolves an endpoint's addresses in order and returns the
// first interface found.
func findInterface(f InterfaceFinder, ips []netip.Addr) (string, error) {
	if len(ips) == 0 {
		return "", fmt.Errorf("%w: the pod has no address yet", ErrNoInterface)
	}
	var errs []error
	for _, ip := range ips {
		name, err := f.InterfaceFor(ip)
		if err == nil {
			return name, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}
