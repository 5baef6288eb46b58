package deploy

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// inCI reports whether the tests run in CI, where nothing may be skipped.
func inCI() bool { return os.Getenv("CI") != "" }

// readInputs reads every file under roots (relative to deploy/). The tests
// here hand their real work to processes (controller-gen, a nested go test)
// whose reads the go test cache cannot see; reading the same inputs here
// makes a change to any of them rerun the test instead of replaying a
// cached pass.
func readInputs(t *testing.T, roots ...string) {
	t.Helper()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = os.ReadFile(path)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCRDsUpToDate regenerates the CRDs and the deepcopy functions with the
// pinned controller-gen (generate.sh installs it on first use) into a
// temporary directory and compares them with the checked-in files. A
// failure means the Go types changed without `make generate`.
func TestCRDsUpToDate(t *testing.T) {
	if testing.Short() && !inCI() {
		t.Skip("-short: not running controller-gen")
	}
	readInputs(t, "generate.sh", "crds", "../policy/api", "../go.mod", "../go.sum")
	tmp := t.TempDir()
	crdDir, objDir, upDir := filepath.Join(tmp, "crds"), filepath.Join(tmp, "object"), filepath.Join(tmp, "upstream")
	// Steps named: the third, manifest, renders the checked-in files and is
	// TestManifestUpToDate's.
	cmd := exec.Command("bash", "generate.sh", "crds", "upstream")
	cmd.Env = append(os.Environ(), "CRD_DIR="+crdDir, "OBJECT_DIR="+objDir, "UPSTREAM_DIR="+upDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/generate.sh failed (it installs controller-gen with `go install`, which needs the Go module proxy): %v\n%s", err, out)
	}

	generated := yamlFiles(t, crdDir)
	have := yamlFiles(t, "crds")
	if strings.Join(generated, " ") != strings.Join(have, " ") {
		t.Errorf("deploy/crds has %v, controller-gen makes %v: run make generate", have, generated)
	}
	for _, f := range generated {
		same(t, filepath.Join(crdDir, f), filepath.Join("crds", f))
	}
	same(t, filepath.Join(objDir, "zz_generated.deepcopy.go"), filepath.Join("..", "policy", "api", "v1alpha1", "zz_generated.deepcopy.go"))

	// The upstream ClusterNetworkPolicy CRD: a copy of the module's at the
	// version go.mod requires, and the only CRD in crds/upstream.
	upstream, err := filepath.Glob(filepath.Join(upDir, "*.yaml"))
	if err != nil || len(upstream) != 1 {
		t.Fatalf("generate.sh upstream made %v (%v), want one CRD", upstream, err)
	}
	same(t, upstream[0], filepath.Join("crds", "upstream", filepath.Base(upstream[0])))
	checkedIn, _ := filepath.Glob(filepath.Join("crds", "upstream", "*.yaml"))
	want := []string{filepath.Join("crds", "upstream", "kustomization.yaml"), filepath.Join("crds", "upstream", filepath.Base(upstream[0]))}
	sort.Strings(want)
	if strings.Join(checkedIn, " ") != strings.Join(want, " ") {
		t.Errorf("deploy/crds/upstream has %v, want %v", checkedIn, want)
	}
}

// yamlFiles lists the generated CRD files of dir (not kustomization.yaml).
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "tabby.dev_*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range m {
		out = append(out, filepath.Base(f))
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatalf("no CRDs in %s", dir)
	}
	return out
}

func same(t *testing.T, generated, checkedIn string) {
	t.Helper()
	want, err := os.ReadFile(generated)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile(checkedIn)
	if err != nil {
		t.Fatalf("%v: run make generate", err)
	}
	if !bytes.Equal(have, want) {
		t.Errorf("%s is stale: run make generate (diff %s %s)", checkedIn, checkedIn, generated)
	}
}

// TestCRDsAgainstAPIServerCode runs the tests of the nested module crdcheck:
// the API server's CRD validation (structural schema, CEL compilation, cost
// budget) and create path on every case and on the conformance corpus, each
// verdict compared with package policy's. It is a module of its own so that
// k8s.io/apiextensions-apiserver stays out of the main go.mod; the first run
// compiles it (about 2-3 minutes on 2 cores), later runs hit the caches.
func TestCRDsAgainstAPIServerCode(t *testing.T) {
	if testing.Short() && !inCI() {
		t.Skip("-short: not building the API server's validation code")
	}
	readInputs(t, "crds", "crdcheck", "../policy", "../selectors", "../e2e/testdata/conformance/tabby", "../go.mod", "../go.sum")
	// -count=1: the test cache does not notice changes to ../crds (outside
	// the nested module), so a cached pass could hide a broken CRD.
	cmd := exec.Command("go", "test", "-count=1", "./...")
	cmd.Dir = "crdcheck"
	// -mod=mod: crdcheck requires the main module through a replace, so a
	// requirement added to the main go.mod would otherwise stop it with
	// "updates to go.mod needed" until someone runs go mod tidy in it.
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/crdcheck: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
