// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver v1.35.4 as child processes on 127.0.0.1, no kubelet, no
// scheduler, no controller manager. It is a thin testing.TB wrapper of
// e2e/controlplane, which also runs outside tests (the lab).
//
// In: the binaries that `make kube-tools` (e2e/kube/build.sh) builds, found in
// $TABBY_KUBE_BIN or ${TABBY_CACHE:-$HOME/.cache/tabby}/kube/v1.35.4/bin.
// When they are missing a test is skipped, except under CI (env CI set), where
// it fails with the instruction to run `make kube-tools` (RequireBinaries).
//
// Out: Start returns a *Cluster that serves TLS on a random free port with
// certificates generated at start (a CA, a serving certificate, an admin
// client certificate in system:masters, a service-account signing key), a
// kubeconfig file, a *rest.Config and a clientset for that admin, and
// UserConfig / UserKubeconfig to mint credentials for other users so RBAC can
// be exercised (authorization mode Node,RBAC). The cluster is torn down on
// t.Cleanup (after writing the logs' tails to a failed test's log); each
// child runs in its own process group, which is killed as a whole, and it is
// also killed by the kernel (PR_SET_PDEATHSIG) if the test binary dies.
// StopAPIServer and StartAPIServer kill and restart only kube-apiserver on the
// same port against the same etcd, to test behaviour while the API is down.
// WithOptions reaches every controlplane.Options field (a network namespace,
// a bind address, a fixed port).
//
// Behaviour worth knowing without a controller manager: namespaces stay
// Terminating after delete, pods stay Pending unless a test sets their status
// (UpdateStatus), no service-account tokens are issued (the ServiceAccount
// admission plugin is off), and the kubernetes Service has no endpoints
// (--endpoint-reconciler-type=none).
//
// Imports: the standard library, e2e/controlplane and, in tests,
// k8s.io/{api,apimachinery,client-go}. Only tests import this package.
package kubetest
