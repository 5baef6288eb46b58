package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"single", "a: 1\n", []string{"a: 1\n"}},
		{"no trailing newline", "a: 1", []string{"a: 1"}},
		{"two", "a: 1\n---\nb: 2\n", []string{"a: 1\n", "b: 2\n"}},
		{"leading separator", "---\na: 1\n", []string{"a: 1\n"}},
		{"empty documents dropped", "---\n---\n# only a comment\n\n---\na: 1\n---\n...\n---\n", []string{"a: 1\n"}},
		{"separator with comment", "a: 1\n--- # next\nb: 2\n", []string{"a: 1\n", "b: 2\n"}},
		{"separator with trailing spaces and CRLF", "a: 1\r\n---  \r\nb: 2\r\n", []string{"a: 1\r\n", "b: 2\r\n"}},
		{"dashes followed by text are content", "a: |\n  x\n---b\n", []string{"a: |\n  x\n---b\n"}},
		{"indented dashes are content", "a: 1\n ---\n", []string{"a: 1\n ---\n"}},
		{"byte order mark", "\xef\xbb\xbfa: 1\n", []string{"a: 1\n"}},
		{"nothing", "", nil},
		{"only comments", "# a\n# b\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitDocuments([]byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d documents %q, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if string(got[i]) != tt.want[i] {
					t.Errorf("document %d = %q, want %q", i+1, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestDecodeDocumentKinds(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantRef Ref
		check   func(t *testing.T, o Object)
	}{
		{
			name:    "namespace clears metadata.namespace",
			in:      "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: ignored}\n",
			wantRef: Ref{Kind: KindNamespace, Name: "shop"},
			check: func(t *testing.T, o Object) {
				if o.Namespace == nil || o.Namespace.Namespace != "" {
					t.Errorf("Namespace = %+v, want the typed object with no namespace", o.Namespace)
				}
			},
		},
		{
			name:    "pod defaults its namespace",
			in:      "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: i}]}\n",
			wantRef: Ref{Kind: KindPod, Namespace: "default", Name: "web"},
			check: func(t *testing.T, o Object) {
				if o.Pod == nil || o.Pod.Namespace != DefaultNamespace || len(o.Pod.Spec.Containers) != 1 {
					t.Errorf("Pod = %+v", o.Pod)
				}
			},
		},
		{
			name:    "service account",
			in:      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: shop}\n",
			wantRef: Ref{Kind: KindServiceAccount, Namespace: "shop", Name: "api"},
			check: func(t *testing.T, o Object) {
				if o.ServiceAccount == nil {
					t.Error("ServiceAccount not set")
				}
			},
		},
		{
			name:    "network policy",
			in:      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80}, {port: http}]}]}\n",
			wantRef: Ref{Kind: KindK8sNetworkPolicy, Namespace: "shop", Name: "np"},
			check: func(t *testing.T, o Object) {
				ports := o.NetworkPolicy.Spec.Ingress[0].Ports
				if ports[0].Port.IntValue() != 80 || ports[1].Port.StrVal != "http" {
					t.Errorf("ports = %+v", ports)
				}
			},
		},
		{
			name:    "cluster network policy is cluster-scoped",
			in:      "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: cnp, namespace: x}\nspec: {tier: Admin, priority: 3, subject: {namespaces: {}}}\n",
			wantRef: Ref{Kind: KindClusterNetworkPolicy, Name: "cnp"},
			check: func(t *testing.T, o Object) {
				if o.ClusterNetworkPolicy.Spec.Priority != 3 {
					t.Errorf("priority = %d", o.ClusterNetworkPolicy.Spec.Priority)
				}
			},
		},
		{
			name:    "JSON document",
			in:      `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "j"}}`,
			wantRef: Ref{Kind: KindNamespace, Name: "j"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := DecodeDocument(Source{File: "f.yaml", Doc: 2}, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if o.Ref != tt.wantRef {
				t.Errorf("Ref = %v, want %v", o.Ref, tt.wantRef)
			}
			if o.Source != (Source{File: "f.yaml", Doc: 2}) {
				t.Errorf("Source = %v", o.Source)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

func TestDecodeDocumentErrors(t *testing.T) {
	src := Source{File: "f.yaml", Doc: 3}
	tests := []struct {
		name string
		in   string
		want []string // every error, in order
	}{
		{
			name: "unknown fields, all of them, with paths",
			in:   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\nspec:\n  podSelector: {}\n  ingress: [{form: []}, {from: [{podselector: {}}]}]\n  Egress: []\n",
			want: []string{
				"f.yaml (document 3): NetworkPolicy shop/np: spec.Egress: unknown field",
				"f.yaml (document 3): NetworkPolicy shop/np: spec.ingress[0].form: unknown field",
				"f.yaml (document 3): NetworkPolicy shop/np: spec.ingress[1].from[0].podselector: unknown field",
			},
		},
		{
			name: "wrong types with paths",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: 1}}\nspec: {hostNetwork: yes-please, containers: [{name: c, ports: [{containerPort: 80.5}]}]}\n",
			want: []string{
				"f.yaml (document 3): Pod p: metadata.labels[a]: must be a string",
				"f.yaml (document 3): Pod p: spec.containers[0].ports[0].containerPort: must be an integer",
				"f.yaml (document 3): Pod p: spec.hostNetwork: must be a boolean",
			},
		},
		{
			name: "YAML 1.1 boolean where a string belongs",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
			want: []string{"f.yaml (document 3): metadata.name: must be a string (quote it: YAML reads y/n/yes/no/on/off/true/false as booleans)"},
		},
		{
			name: "tabby kinds are checked the same way",
			in:   "apiVersion: tabby.dev/v1alpha1\nkind: NetworkSet\nmetadata: {name: s, namespace: y}\nspec: {nets: [10.0.0.0/8], netz: []}\n",
			want: []string{
				"f.yaml (document 3): NetworkSet s: metadata.namespace: must be a string (quote it: YAML reads y/n/yes/no/on/off/true/false as booleans)",
				"f.yaml (document 3): NetworkSet s: spec.netz: unknown field",
			},
		},
		{
			name: "int or string",
			in:   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec: {podSelector: {}, ingress: [{ports: [{port: 1.5}, {port: [80]}]}]}\n",
			want: []string{
				"f.yaml (document 3): NetworkPolicy np: spec.ingress[0].ports[0].port: must be a string or a 32-bit integer",
				"f.yaml (document 3): NetworkPolicy np: spec.ingress[0].ports[1].port: must be a string or a 32-bit integer",
			},
		},
		{
			name: "unsupported kind",
			in:   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
			want: []string{`f.yaml (document 3): Deployment d: kind: unsupported kind "Deployment" of apiVersion "apps/v1"`},
		},
		{
			name: "known kind of another version",
			in:   "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: d}\n",
			want: []string{`f.yaml (document 3): NetworkPolicy d: kind: unsupported kind "NetworkPolicy" of apiVersion "networking.k8s.io/v1beta1"`},
		},
		{
			name: "missing apiVersion",
			in:   "kind: Pod\nmetadata: {name: p}\n",
			want: []string{"f.yaml (document 3): Pod p: apiVersion: Required value"},
		},
		{
			name: "kind not a string",
			in:   "apiVersion: v1\nkind: [Pod]\n",
			want: []string{"f.yaml (document 3): kind: must be a string"},
		},
		{
			name: "not a mapping",
			in:   "- a\n- b\n",
			want: []string{"f.yaml (document 3): a document must be a mapping with apiVersion and kind"},
		},
		{
			name: "missing name",
			in:   "apiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: shop}\n",
			want: []string{"f.yaml (document 3): metadata.name: Required value: name is required"},
		},
		{
			name: "invalid namespace name",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata: {name: Shop.Front}\n",
			want: []string{`f.yaml (document 3): Namespace Shop.Front: metadata.name: Invalid value: "Shop.Front": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		},
		{
			name: "a List needs Decode",
			in:   "apiVersion: v1\nkind: List\nitems: []\n",
			want: []string{"f.yaml (document 3): kind: a List holds several objects: decode it with Decode or LoadFiles"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeDocument(src, []byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			got := flattenErrors(Object{Source: src}, err, nil)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors:\n%v\nwant %d", len(got), err, len(tt.want))
			}
			for i, e := range got {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Errorf("error %d is %T, want *FieldError", i, e)
				}
				if e.Error() != tt.want[i] {
					t.Errorf("error %d:\n got %s\nwant %s", i, e, tt.want[i])
				}
			}
		})
	}
}

func TestDecodeDocumentDuplicateKey(t *testing.T) {
	_, err := DecodeDocument(Source{Doc: 1}, []byte("apiVersion: v1\nkind: Pod\nkind: Namespace\n"))
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(fe.Reason, "invalid YAML") || !strings.Contains(fe.Reason, `"kind" already set`) {
		t.Fatalf("err = %v, want an invalid-YAML FieldError about the duplicate key", err)
	}
}

func TestDecodeLists(t *testing.T) {
	in := `apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: a}}
  - {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}, spec: {containers: [{name: c, bogus: 1}]}}
  - [not, an, object]
  - {apiVersion: v1, kind: List, items: []}
---
apiVersion: v1
kind: ServiceAccountList
items:
  - metadata: {name: sa, namespace: a}
  - {apiVersion: v1, kind: Namespace, metadata: {name: b}}
  - metadata: {namespace: a}
`
	objs, err := Decode("l.yaml", []byte(in))
	var refs []string
	for _, o := range objs {
		refs = append(refs, o.Ref.String()+"@"+o.Source.String())
	}
	wantRefs := []string{
		"Namespace a@l.yaml (document 1)",
		"ServiceAccount a/sa@l.yaml (document 2)",
		"Namespace b@l.yaml (document 2)",
	}
	if strings.Join(refs, "|") != strings.Join(wantRefs, "|") {
		t.Errorf("objects = %q, want %q", refs, wantRefs)
	}
	wantErrs := []string{
		"l.yaml (document 1): Pod a/p: spec.containers[0].bogus: unknown field",
		"l.yaml (document 1): items[2]: must be a mapping",
		"l.yaml (document 1): items[3].kind: a List may not hold Lists",
		"l.yaml (document 2): items[2].metadata.name: Required value: name is required",
	}
	if err == nil || err.Error() != strings.Join(wantErrs, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(wantErrs, "\n"))
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	objs, err := LoadFiles(good, missing, bad)
	var names []string
	for _, o := range objs {
		names = append(names, o.Ref.Name+"@"+o.Source.String())
	}
	want := []string{"a@" + good + " (document 1)", "b@" + good + " (document 2)", "c@" + bad + " (document 1)"}
	if strings.Join(names, "|") != strings.Join(want, "|") {
		t.Errorf("objects = %q, want %q", names, want)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want it to wrap os.ErrNotExist", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Source != (Source{File: bad, Doc: 2}) || fe.Field != "kind" {
		t.Errorf("err = %v, want a FieldError about %s document 2, field kind", err, bad)
	}
}
