package policy

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeDocument: no input may panic decoding or normalising, every error
// is a *FieldError, and a decoded object is named and has exactly one typed
// field. The seed corpus is testdata/fuzz/FuzzDecodeDocument.
func FuzzDecodeDocument(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := Source{File: "fuzz.yaml", Doc: 1}
		o, err := DecodeDocument(src, data)
		if err != nil {
			for _, e := range flattenErrors(Object{Source: src}, err, nil) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v (%T) is not a *FieldError", e, e)
				}
			}
		} else {
			if o.Ref.Name == "" || o.Ref.Kind == "" {
				t.Fatalf("decoded object without identity: %+v", o.Ref)
			}
			if n := typedFields(o); n != 1 {
				t.Fatalf("%d typed fields set, want 1", n)
			}
		}
		// The whole pipeline, lists included, on the same bytes.
		objs, _ := Decode("fuzz.yaml", data)
		if err == nil {
			objs = append(objs, o)
		}
		m, errs := Normalize(objs)
		for _, e := range errs {
			var fe *FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("normalize error %v (%T) is not a *FieldError", e, e)
			}
		}
		// Normalising the same objects again must give the same model.
		if m2, _ := Normalize(objs); m.Dump() != m2.Dump() {
			t.Fatal("Normalize is not deterministic")
		}
	})
}

// typedFields counts the non-nil typed pointers of o.
func typedFields(o Object) int {
	v := reflect.ValueOf(o)
	n := 0
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}
