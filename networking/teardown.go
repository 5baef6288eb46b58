//go:build linux

package networking

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TeardownPod removes the pod's veth pair, and with it the host routes, the
// proxy entry and everything on the pod side. It is idempotent: an absent
// veth is success. It deletes only a veth it can prove is this pod's (its
// peer is spec.PodIfName in spec.PodNetns): a veth under the same host name
// whose peer is elsewhere belongs to a newer sandbox of the same pod, and a
// late DEL of the old sandbox must not cut the new one off. If the pod
// netns is gone, its end of the veth went with it and there is nothing to
// do. spec.IPs and spec.MTU are not needed.
func TeardownPod(ctx context.Context, spec PodSpec) error {
	if spec.PodIfName == "" {
		spec.PodIfName = DefaultPodIfName
	}
	for _, err := range []error{checkIfName(spec.HostIfName), checkIfName(spec.PodIfName),
		checkNetnsPath("host netns", spec.HostNetns, false), checkNetnsPath("pod netns", spec.PodNetns, false)} {
		if err != nil {
			return &StepError{Step: "validate spec", Interface: spec.HostIfName, Err: fmt.Errorf("%w: %w", ErrInvalidSpec, err)}
		}
	}
	host, err := openNS("host", spec.hostNetnsPath())
	if err != nil {
		return err
	}
	defer host.close()
	if spec.PodNetns == "" {
		return nil
	}
	pod, err := openNS("pod", spec.PodNetns)
	if errors.Is(err, ErrNetnsNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer pod.close()
	o := &op{spec: spec, host: host, pod: pod}
	var victim netlink.Link
	if err := o.do(ctx, stepInspect, spec.HostIfName, host.path, func() error {
		hl, err := host.linkByName(spec.HostIfName)
		if err != nil || hl == nil {
			return err
		}
		pl, err := pod.linkByName(spec.PodIfName)
		if err != nil {
			return err
		}
		ok, err := isPeerPair(host, hl, pod, pl)
		if ok {
			victim = hl
		}
		return err
	}); err != nil || victim == nil {
		return err
	}
	return o.do(ctx, stepDelete, spec.HostIfName, host.path, func() error {
		return ignoreNotFound(host.h.LinkDel(victim))
	})
}

// ignoreNotFound treats "the link is already gone" as success.
func ignoreNotFound(err error) error {
	var nf netlink.LinkNotFoundError
	if err == nil || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.As(err, &nf) {
		return nil
	}
	return err
}
