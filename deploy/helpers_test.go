package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// manifestPath is the file users apply (contract B).
const manifestPath = "tabby.yaml"

// The agent's identity (contract B).
const (
	agentNamespace = "tabby-system"
	agentName      = "tabby-agent"
	agentUser      = "system:serviceaccount:tabby-system:tabby-agent"
)

var agentGroups = []string{"system:serviceaccounts", "system:serviceaccounts:tabby-system", "system:authenticated"}

// agentRules is contract B's ClusterRole, written out independently of
// deploy/base/rbac.yaml so that an edit of either one fails the tests.
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "serviceaccounts"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"tabby.dev"}, Resources: []string{"tiers", "networkpolicies", "globalnetworkpolicies", "networksets", "globalnetworksets"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"tabby.dev"}, Resources: []string{"tabbynodes"}, Verbs: []string{"get", "create"}},
	{APIGroups: []string{"tabby.dev"}, Resources: []string{"tabbynodes/status"}, Verbs: []string{"get", "update", "patch"}},
}

// permission is one (API group, resource[/subresource], verb) that a rule
// grants.
type permission struct{ group, resource, verb string }

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	return p.verb + " " + g + "/" + p.resource
}

// expand lists every permission the rules grant, sorted. Resource names are
// not used by any rule here; a rule with some is reported as such so that
// it cannot be mistaken for an unrestricted grant.
func expand(rules []rbacv1.PolicyRule) []permission {
	seen := map[permission]bool{}
	for _, r := range rules {
		suffix := ""
		if len(r.ResourceNames) > 0 {
			suffix = " (names " + strings.Join(r.ResourceNames, ",") + ")"
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					seen[permission{g, res + suffix, v}] = true
				}
			}
		}
	}
	out := make([]permission, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// permissionDiff describes how got differs from want: "extra [...]
// missing [...]".
func permissionDiff(got, want []permission) string {
	var extra, missing []string
	for _, p := range got {
		if !slices.Contains(want, p) {
			extra = append(extra, p.String())
		}
	}
	for _, p := range want {
		if !slices.Contains(got, p) {
			missing = append(missing, p.String())
		}
	}
	return fmt.Sprintf("extra %q, missing %q", extra, missing)
}

// readManifest decodes every object of the multi-document file at path.
func readManifest(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatalf("%s holds no objects", path)
	}
	return objs
}

// find returns the one object of kind and name in objs, converted to T.
func find[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if found != nil {
				t.Fatalf("two %s %s in %s", kind, name, manifestPath)
			}
			found = o
		}
	}
	if found == nil {
		t.Fatalf("no %s %s in %s", kind, name, manifestPath)
	}
	out := new(T)
	// Strict: a field the typed object does not know is a typo in the YAML
	// that the API server would reject too.
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(found.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
	return out
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// tabbyBinary builds cmd/tabby once per test binary run.
func tabbyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tabby-deploy-test-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "tabby"), "../cmd/tabby").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/tabby: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "tabby")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
