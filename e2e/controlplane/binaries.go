package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KubeVersion is the Kubernetes release the binaries are built from; it must
// match e2e/kube/build.sh and the k8s.io/* v0.35.x modules Tabby uses.
const KubeVersion = "v1.35.4"

// Binaries are the absolute paths of the control-plane executables.
type Binaries struct {
	Dir       string `json:"dir"`
	APIServer string `json:"apiserver"`
	Etcd      string `json:"etcd"`
	Kubectl   string `json:"kubectl"`
}

// MissingBinariesError reports which executables were not found where looked.
type MissingBinariesError struct {
	Dir     string
	Missing []string
}

func (e *MissingBinariesError) Error() string {
	return fmt.Sprintf("kube test binaries %s missing in %s: run `make kube-tools` "+
		"(builds kube-apiserver, kubectl %s and etcd into the cache; or set TABBY_KUBE_BIN)",
		strings.Join(e.Missing, ", "), e.Dir, KubeVersion)
}

// BinDir is where the binaries are looked up: $TABBY_KUBE_BIN if set, else
// the versioned cache directory that e2e/kube/build.sh fills.
func BinDir() string {
	if d := os.Getenv("TABBY_KUBE_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("TABBY_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache", "tabby")
	}
	return filepath.Join(cache, "kube", KubeVersion, "bin")
}

// FindBinaries locates the executables in dir; a missing one yields a
// *MissingBinariesError.
func FindBinaries(dir string) (Binaries, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Binaries{}, fmt.Errorf("resolve %s: %w", dir, err)
	}
	b := Binaries{
		Dir:       abs,
		APIServer: filepath.Join(abs, "kube-apiserver"),
		Etcd:      filepath.Join(abs, "etcd"),
		Kubectl:   filepath.Join(abs, "kubectl"),
	}
	var missing []string
	for _, p := range []string{b.APIServer, b.Etcd, b.Kubectl} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, filepath.Base(p))
		}
	}
	if len(missing) > 0 {
		return Binaries{}, &MissingBinariesError{Dir: abs, Missing: missing}
	}
	return b, nil
}
