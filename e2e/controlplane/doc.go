// Package controlplane runs a real Kubernetes control plane: etcd and
// kube-apiserver v1.35.4 as child processes, no kubelet, no scheduler, no
// controller manager. It has no testing dependency: e2e/kubetest wraps it for
// tests, and the lab (e2e/lab) runs it detached inside a network namespace.
//
// In: the binaries that `make kube-tools` (e2e/kube/build.sh) builds, found in
// $TABBY_KUBE_BIN or ${TABBY_CACHE:-$HOME/.cache/tabby}/kube/v1.35.4/bin
// (FindBinaries returns a *MissingBinariesError naming the make target), and
// Options: a directory for certificates, kubeconfigs and the state file, where
// to listen (default 127.0.0.1 and a free port), an optional network
// namespace, attached or detached processes, extra apiserver flags.
//
// Out: Launch returns a *ControlPlane once /readyz answers. It serves TLS with
// certificates generated at launch (a CA, a serving certificate for loopback,
// the bind address and the kubernetes Service IP, an admin client certificate
// in system:masters, a service-account signing key), a kubeconfig file, a
// *rest.Config and a clientset for that admin. UserConfig, UserKubeconfig and
// WriteKubeconfig mint client certificates for any user and groups (CN and O,
// as the x509 authenticator reads them), so components run with the RBAC they
// ship (authorization mode Node,RBAC); WriteKubeconfig can name another
// server address, such as a forwarder's. StopAPIServer and StartAPIServer
// kill and restart only kube-apiserver, with the same command line, against
// the same etcd. StartReplica runs one more kube-apiserver (same flags,
// certificates and etcd, another port), as an HA control plane has, which
// keeps serving while the primary is stopped; StopReplica kills it. Stop
// kills them all and removes etcd's data.
//
// Namespaces: with Options.Netns, etcd (on that namespace's 127.0.0.1) and
// kube-apiserver (on BindAddress) are forked from a thread switched into the
// namespace, so they run there; the admin Config and Client dial from inside
// it too, so they work from the launching process in any namespace.
//
// Processes: attached (the default), each child leads its own process group,
// which is killed as a whole, and the kernel kills it (PR_SET_PDEATHSIG) if the
// launching process dies; the children are forked from one thread that lives
// until Stop, since the signal follows the forking thread. Detached, each child
// leads its own session with no death signal and outlives the launcher. Either
// way every child's PID and start time (replicas' too) are written to
// <Dir>/controlplane.json as it starts, and Open(dir) returns a detached
// control plane from that file in another process (for Stop, StopAPIServer,
// StartAPIServer, replicas, credentials); a PID whose start time differs is
// never signalled.
//
// Without a controller manager: namespaces stay Terminating after delete
// (unless a client finalizes them), pods stay Pending unless a client sets
// their status (UpdateStatus), no service-account tokens are issued (the
// ServiceAccount admission plugin is off), and the kubernetes Service has no
// endpoints (--endpoint-reconciler-type=none).
//
// Errors: *MissingBinariesError, *ExitError (a child died while it was
// expected to come up; quotes its log), ErrStopped; others wrap their cause.
//
// Imports: the standard library, golang.org/x/sys/unix, e2e/probe (InNetns)
// and k8s.io/client-go (rest, kubernetes).
package controlplane
