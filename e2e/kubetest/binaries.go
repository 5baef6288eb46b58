package kubetest

import (
	"os"
	"testing"

	"github.com/tabbynet/tabby/e2e/controlplane"
)

// KubeVersion is the Kubernetes release the binaries are built from.
const KubeVersion = controlplane.KubeVersion

// Binaries are the absolute paths of the control-plane executables.
type Binaries = controlplane.Binaries

// MissingBinariesError reports which executables were not found where looked.
type MissingBinariesError = controlplane.MissingBinariesError

// BinDir is where the binaries are looked up: $TABBY_KUBE_BIN if set, else
// the versioned cache directory that e2e/kube/build.sh fills.
func BinDir() string { return controlplane.BinDir() }

// FindBinaries locates the executables in dir; a missing one yields a
// *MissingBinariesError.
func FindBinaries(dir string) (Binaries, error) { return controlplane.FindBinaries(dir) }

// RequireBinaries returns the binaries or ends the test: skipped on a
// developer machine that has not run `make kube-tools`, failed under CI
// (env CI set), where a silent skip would hide the whole Kubernetes suite.
func RequireBinaries(t testing.TB) Binaries {
	t.Helper()
	b, err := FindBinaries(BinDir())
	if err == nil {
		return b
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %v", err)
	}
	t.Skipf("skipping: %v", err)
	return Binaries{}
}
