package store

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

// TestDocumentCacheDecodesAsDecode feeds one file a random sequence of
// contents made of documents that repeat, move, change and break, and checks
// that the cached per-document decode gives exactly policy.Decode's objects
// (with their current document numbers) and problems every time.
func TestDocumentCacheDecodesAsDecode(t *testing.T) {
	pool := []string{
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n",
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: b}}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}\n",
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}\n",
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 81}]}]}\n",
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec: {podSelector: {}, ingres: []}\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: b, labels: {x: y}}}\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: c}}\n- {apiVersion: v1, kind: Nope, metadata: {name: d}}\n",
		"not: [valid\n",
		"# only a comment\n",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fs := &fileState{objs: map[policy.Ref]policy.Object{}}
	for step := range 300 {
		var docs []string
		for range rng.IntN(6) {
			docs = append(docs, pool[rng.IntN(len(pool))])
		}
		data := []byte(strings.Join(docs, "---\n"))
		gotObjs, gotErrs := fs.decode("f.yaml", data)
		wantObjs, err := policy.Decode("f.yaml", data)
		if !reflect.DeepEqual(gotObjs, wantObjs) {
			t.Fatalf("step %d: objects differ from policy.Decode\n%s", step, data)
		}
		if got, want := fmt.Sprint(gotErrs), fmt.Sprint(flatten(err)); got != want {
			t.Fatalf("step %d: problems %s, want %s\n%s", step, got, want, data)
		}
	}
}
