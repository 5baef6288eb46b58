package policy

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// Strict decoding. encoding/json's DisallowUnknownFields stops at the first
// unknown key and does not say where it is, and it matches keys
// case-insensitively; the API server (through sigs.k8s.io/json) reports every
// unknown or wrongly-cased key with its full path. checkFields does the same
// by walking the generic JSON value against the Go type, so that a typo like
// spec.ingres or spec.ingress[0].form is reported with its path, and so are
// values of the wrong type (spec.ingress[0].ports[1].port: "eighty").

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	intOrString     = reflect.TypeFor[intstr.IntOrString]()
)

// fieldProblem is a key or value of a document that does not fit its Go type.
type fieldProblem struct {
	path, reason string
}

// checkFields appends a problem for every object key in v that type t does
// not declare and for every value of the wrong JSON type (which json.Unmarshal
// would report without list indices, and only the first). v is a value
// decoded by encoding/json into any, with UseNumber.
func checkFields(v any, t reflect.Type, path string, out []fieldProblem) []fieldProblem {
	if v == nil {
		return out // null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == intOrString {
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseInt(string(n), 10, 32); err != nil {
				return append(out, fieldProblem{path, "must be a string or a 32-bit integer"})
			}
		} else if _, ok := v.(string); !ok {
			return append(out, fieldProblem{path, "must be a string or a 32-bit integer"})
		}
		return out
	}
	// Other types that decode themselves (Quantity, Time, ...) are leaves:
	// their own decoder rejects what they do not understand.
	if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return out
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return append(out, fieldProblem{path, "must be an object"})
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(m) {
			ft, ok := fields[k]
			if !ok {
				out = append(out, fieldProblem{joinPath(path, k), "unknown field"})
				continue
			}
			out = checkFields(m[k], ft, joinPath(path, k), out)
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				return append(out, fieldProblem{path, "must be a base64 string"})
			}
			return out
		}
		s, ok := v.([]any)
		if !ok {
			return append(out, fieldProblem{path, "must be a list"})
		}
		for i, e := range s {
			out = checkFields(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", out)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return append(out, fieldProblem{path, "must be an object"})
		}
		for _, k := range sortedKeys(m) {
			out = checkFields(m[k], t.Elem(), path+"["+k+"]", out)
		}
	case reflect.String:
		switch v.(type) {
		case string:
		case bool:
			// YAML 1.1 reads y, n, yes, no, on and off as booleans.
			out = append(out, fieldProblem{path, "must be a string (quote it: YAML reads y/n/yes/no/on/off/true/false as booleans)"})
		default:
			out = append(out, fieldProblem{path, "must be a string"})
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			out = append(out, fieldProblem{path, "must be a boolean"})
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return append(out, fieldProblem{path, "must be an integer"})
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			out = append(out, fieldProblem{path, intReason(err, "an integer", t.Bits())})
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return append(out, fieldProblem{path, "must be a non-negative integer"})
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			out = append(out, fieldProblem{path, intReason(err, "a non-negative integer", t.Bits())})
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			out = append(out, fieldProblem{path, "must be a number"})
		}
	}
	return out
}

func intReason(err error, what string, bits int) string {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Sprintf("must be %s that fits in %d bits", what, bits)
	}
	return "must be " + what
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields maps the JSON keys a struct type accepts to their types,
// following encoding/json's rules for tags and embedded structs.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, dup := fields[k]; !dup {
						fields[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	fieldCache.Store(t, fields)
	return fields
}
