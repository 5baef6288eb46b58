package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/yaml"

	tabbyv1 "github.com/tabbynet/tabby/policy/api/v1alpha1"
)

// API versions Tabby reads.
const (
	apiCoreV1       = "v1"
	apiNetworkingV1 = "networking.k8s.io/v1"
	apiCNPV1alpha2  = "policy.networking.k8s.io/v1alpha2"
	apiTabbyV1      = "tabby.dev/v1alpha1"
)

// DefaultNamespace is the namespace of a namespaced object whose
// metadata.namespace is empty, as kubectl would apply it with the default
// context.
const DefaultNamespace = "default"

// SplitDocuments splits multi-document YAML at separator lines: a line that
// starts with "---" followed by nothing but spaces or a comment (the rule of
// k8s.io/apimachinery's YAML reader). Documents holding nothing but blank
// lines and comments are dropped, so the n-th returned document is the n-th
// non-empty one: that n (1-based) is what Source.Doc holds.
func SplitDocuments(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	var docs [][]byte
	start := 0
	flush := func(end int) {
		if doc := data[start:end]; !emptyDocument(doc) {
			docs = append(docs, doc)
		}
	}
	for pos := 0; pos < len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += pos + 1
		}
		if isSeparator(data[pos:end]) {
			flush(pos)
			start = end
		}
		pos = end
	}
	flush(len(data))
	return docs
}

func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

// emptyDocument reports whether doc has only blank lines, comments and
// document-end markers.
func emptyDocument(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		t := bytes.TrimSpace(line)
		if len(t) != 0 && t[0] != '#' && !bytes.Equal(t, []byte("...")) {
			return false
		}
	}
	return true
}

// LoadFiles reads and decodes files. It returns every object that decoded,
// in file and document order, and errors.Join of all errors (read errors and
// one *FieldError per decoding problem).
func LoadFiles(paths ...string) ([]Object, error) {
	var objs []Object
	var errs []error
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
			continue
		}
		o, err := Decode(p, data)
		objs = append(objs, o...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return objs, errors.Join(errs...)
}

// Decode decodes every document of one file's contents, expanding Lists. It
// returns the objects that decoded and errors.Join of one *FieldError per
// problem.
func Decode(file string, data []byte) ([]Object, error) {
	var objs []Object
	var errs []error
	for i, doc := range SplitDocuments(data) {
		o, err := DecodeDocuments(Source{File: file, Doc: i + 1}, doc)
		objs = append(objs, o...)
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, j.Unwrap()...) // one flat list of *FieldErrors
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	return objs, errors.Join(errs...)
}

// DecodeDocuments decodes one document (one of SplitDocuments' results) as
// Decode does: one object, or the items of a List. On error it returns what
// did decode (the valid items of a List) and the problems, joined
// *FieldErrors. Decode is this for every document of a file; a caller that
// caches documents by content (the directory datastore) calls it directly.
func DecodeDocuments(src Source, doc []byte) ([]Object, error) {
	j, m, err := documentMap(src, doc)
	if err != nil {
		return nil, err
	}
	if isList(m) {
		o, errs := decodeList(src, m)
		return o, errors.Join(errs...)
	}
	o, err := decodeMap(src, j, m)
	if err != nil {
		return nil, errors.Join(flattenErrors(Object{Source: src}, err, nil)...)
	}
	return []Object{o}, nil
}

// DecodeDocument decodes one YAML (or JSON) document holding one object. A
// List is an error here: use Decode. Errors are *FieldError, joined when a
// document has several (for example several unknown fields).
func DecodeDocument(src Source, data []byte) (Object, error) {
	j, m, err := documentMap(src, data)
	if err != nil {
		return Object{Source: src}, err
	}
	if isList(m) {
		return Object{Source: src}, &FieldError{Source: src, Field: "kind",
			Reason: "a List holds several objects: decode it with Decode or LoadFiles"}
	}
	return decodeMap(src, j, m)
}

// documentMap converts a document to JSON and to a generic JSON object.
// Duplicate keys are errors, as with the API server's strict decoding. The
// conversion does not look at the target type (unlike yaml.Unmarshal, which
// would quietly turn `name: 123` into a string): like kubectl, which sends
// JSON to the API server, a number where a string belongs is an error.
func documentMap(src Source, data []byte) ([]byte, map[string]any, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, nil, &FieldError{Source: src, Reason: "invalid YAML: " + err.Error(), Err: err}
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber() // exact numbers when a List item is re-encoded
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, nil, &FieldError{Source: src, Reason: "invalid document: " + err.Error(), Err: err}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, &FieldError{Source: src, Reason: "a document must be a mapping with apiVersion and kind"}
	}
	return j, m, nil
}

func isList(m map[string]any) bool {
	kind, _ := m["kind"].(string)
	_, hasItems := m["items"]
	return kind == "List" || (strings.HasSuffix(kind, "List") && hasItems)
}

// decodeList decodes the items of a v1 List or of a typed list (PodList,
// NetworkPolicyList, ...). Items of a typed list may omit apiVersion and
// kind, as the API server returns them.
func decodeList(src Source, m map[string]any) ([]Object, []error) {
	var errs []error
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	for _, k := range sortedKeys(m) {
		switch k {
		case "apiVersion", "kind", "metadata", "items":
		default:
			errs = append(errs, &FieldError{Source: src, Field: k, Reason: "unknown field"})
		}
	}
	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		return nil, append(errs, &FieldError{Source: src, Field: "items", Reason: "must be a list"})
	}
	var objs []Object
	for i, it := range items {
		prefix := "items[" + strconv.Itoa(i) + "]"
		im, ok := it.(map[string]any)
		if !ok {
			errs = append(errs, &FieldError{Source: src, Field: prefix, Reason: "must be a mapping"})
			continue
		}
		if kind != "List" {
			if _, ok := im["apiVersion"]; !ok {
				im["apiVersion"] = apiVersion
			}
			if _, ok := im["kind"]; !ok {
				im["kind"] = strings.TrimSuffix(kind, "List")
			}
		}
		if isList(im) {
			errs = append(errs, &FieldError{Source: src, Field: prefix + ".kind", Reason: "a List may not hold Lists"})
			continue
		}
		data, err := json.Marshal(im)
		if err != nil { // cannot happen: im came from JSON
			errs = append(errs, &FieldError{Source: src, Field: prefix, Reason: err.Error(), Err: err})
			continue
		}
		o, err := decodeMap(src, data, im)
		if err != nil {
			for _, e := range flattenErrors(Object{Source: src}, err, nil) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.Object.Name == "" {
					fe.Field = joinPath(prefix, fe.Field)
				}
				errs = append(errs, e)
			}
			continue
		}
		objs = append(objs, o)
	}
	return objs, errs
}

// decodeMap decodes one object; data is its JSON text, m the same as a
// generic map.
func decodeMap(src Source, data []byte, m map[string]any) (Object, error) {
	o := Object{Source: src, Ref: refHint(m)}
	apiVersion, err := typeField(o, m, "apiVersion")
	if err != nil {
		return o, err
	}
	kind, err := typeField(o, m, "kind")
	if err != nil {
		return o, err
	}
	var meta metav1.Object
	switch {
	case apiVersion == apiCoreV1 && kind == "Namespace":
		o.Ref.Kind = KindNamespace
		o.Namespace, err = decodeTyped[corev1.Namespace](o, data, m)
		meta = o.Namespace
	case apiVersion == apiCoreV1 && kind == "Pod":
		o.Ref.Kind = KindPod
		o.Pod, err = decodeTyped[corev1.Pod](o, data, m)
		meta = o.Pod
	case apiVersion == apiCoreV1 && kind == "ServiceAccount":
		o.Ref.Kind = KindServiceAccount
		o.ServiceAccount, err = decodeTyped[corev1.ServiceAccount](o, data, m)
		meta = o.ServiceAccount
	case apiVersion == apiNetworkingV1 && kind == "NetworkPolicy":
		o.Ref.Kind = KindK8sNetworkPolicy
		o.NetworkPolicy, err = decodeTyped[networkingv1.NetworkPolicy](o, data, m)
		meta = o.NetworkPolicy
	case apiVersion == apiCNPV1alpha2 && kind == "ClusterNetworkPolicy":
		o.Ref.Kind = KindClusterNetworkPolicy
		o.ClusterNetworkPolicy, err = decodeTyped[cnpv1alpha2.ClusterNetworkPolicy](o, data, m)
		meta = o.ClusterNetworkPolicy
	case apiVersion == apiTabbyV1:
		// Check fields and value types here too, before decodeTabby: errors
		// then have full paths, and a YAML 1.1 boolean where a string belongs
		// (namespace: y) is an error instead of quietly becoming "true", as
		// it would through yaml.Unmarshal into a typed struct.
		if t, ok := tabbyTypes[kind]; ok {
			if err := checkedFields(o, t, m); err != nil {
				return o, err
			}
		}
		o.Ref = Ref{}
		if err := decodeTabby(kind, data, &o); err != nil {
			return o, err
		}
		// decodeTabby owns the namespace rules of its kinds (it requires
		// one on namespaced kinds); the name format is checked here as for
		// every kind.
		return o, checkRef(&o)
	default:
		return o, &FieldError{Source: src, Object: o.Ref, Field: "kind",
			Reason: fmt.Sprintf("unsupported kind %q of apiVersion %q", kind, apiVersion)}
	}
	if err != nil {
		return o, err
	}
	return o, setRef(&o, meta)
}

// refHint reads the object's identity from the generic map, so that errors
// raised before typed decoding succeeds can still name the object.
func refHint(m map[string]any) Ref {
	md, _ := m["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	kind, _ := m["kind"].(string)
	return Ref{Kind: Kind(kind), Namespace: ns, Name: name}
}

func typeField(o Object, m map[string]any, key string) (string, error) {
	v, present := m[key]
	s, ok := v.(string)
	switch {
	case !present || (ok && s == ""):
		return "", &FieldError{Source: o.Source, Object: o.Ref, Field: key, Reason: "Required value"}
	case !ok:
		return "", &FieldError{Source: o.Source, Object: o.Ref, Field: key, Reason: "must be a string"}
	}
	return s, nil
}

// decodeTyped strictly decodes data into a new T: every unknown field and
// every value of the wrong type is an error, each reported with its path.
// json.Unmarshal's own errors remain as a fallback (a malformed Quantity).
func decodeTyped[T any](o Object, data []byte, m map[string]any) (*T, error) {
	if err := checkedFields(o, reflect.TypeFor[T](), m); err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		fe := &FieldError{Source: o.Source, Object: o.Ref, Reason: err.Error(), Err: err}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			fe.Field = te.Field
			fe.Reason = fmt.Sprintf("cannot decode a JSON %s into %s", te.Value, te.Type)
		}
		return nil, fe
	}
	return v, nil
}

// checkedFields reports every unknown field and wrongly typed value of m
// against type t, or nil.
func checkedFields(o Object, t reflect.Type, m map[string]any) error {
	problems := checkFields(m, t, "", nil)
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = &FieldError{Source: o.Source, Object: o.Ref, Field: p.path, Reason: p.reason}
	}
	return errors.Join(errs...)
}

// tabbyTypes are the Go types of the tabby.dev kinds, for checkedFields.
var tabbyTypes = map[string]reflect.Type{
	tabbyv1.KindTier:                reflect.TypeFor[tabbyv1.Tier](),
	tabbyv1.KindNetworkPolicy:       reflect.TypeFor[tabbyv1.NetworkPolicy](),
	tabbyv1.KindGlobalNetworkPolicy: reflect.TypeFor[tabbyv1.GlobalNetworkPolicy](),
	tabbyv1.KindNetworkSet:          reflect.TypeFor[tabbyv1.NetworkSet](),
	tabbyv1.KindGlobalNetworkSet:    reflect.TypeFor[tabbyv1.GlobalNetworkSet](),
}

// setRef sets o.Ref from the decoded metadata, defaulting the namespace of
// namespaced kinds and clearing it on cluster-scoped ones (the API server
// ignores it there), and validates the identity.
func setRef(o *Object, meta metav1.Object) error {
	switch o.Ref.Kind {
	case KindNamespace, KindClusterNetworkPolicy:
		meta.SetNamespace("")
	default:
		if meta.GetNamespace() == "" {
			meta.SetNamespace(DefaultNamespace)
		}
	}
	o.Ref.Namespace, o.Ref.Name = meta.GetNamespace(), meta.GetName()
	return checkRef(o)
}

// checkRef validates the object's name and namespace formats.
func checkRef(o *Object) error {
	p := field.NewPath("metadata")
	errs := validateName(o.Ref.Kind, o.Ref.Name, p.Child("name"))
	if o.Ref.Namespace != "" {
		errs = append(errs, validateName(KindNamespace, o.Ref.Namespace, p.Child("namespace"))...)
	}
	return objectErrors(*o, errs)
}
