package crdcheck

// The API server's create path for a custom resource, in process: decode,
// prune (reported, as kubectl's default strict field validation does),
// default, PrepareForCreate, Validate. And the normaliser's verdict on the
// same document.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/policy"
)

// crdDir holds the checked-in CRDs this package tests.
const crdDir = "../crds"

// served is one kind as the API server would serve it from its CRD.
type served struct {
	crd        *apiextensionsv1.CustomResourceDefinition
	file       string
	gvk        schema.GroupVersionKind
	namespaced bool
	hasStatus  bool
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

var (
	loadOnce   sync.Once
	loadedCRDs map[string]*served // by kind
	loadErr    error
)

// crds returns the checked-in CRDs by kind, each ready to validate objects.
func crds(t testing.TB) map[string]*served {
	t.Helper()
	loadOnce.Do(func() { loadedCRDs, loadErr = loadCRDs(crdDir) })
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return loadedCRDs
}

func loadCRDs(dir string) (map[string]*served, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string]*served{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		s, err := serve(crd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		s.file = filepath.Base(f)
		if _, dup := out[crd.Spec.Names.Kind]; dup {
			return nil, fmt.Errorf("%s: a second CRD for kind %s", f, crd.Spec.Names.Kind)
		}
		out[crd.Spec.Names.Kind] = s
	}
	return out, nil
}

// serve builds what customresource_handler.go builds for the one version of
// crd: the structural schema, the OpenAPI validators and the strategy.
func serve(crd *apiextensionsv1.CustomResourceDefinition) (*served, error) {
	if len(crd.Spec.Versions) != 1 {
		return nil, fmt.Errorf("want exactly one version, have %d", len(crd.Spec.Versions))
	}
	v := crd.Spec.Versions[0]
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return nil, errors.New("no schema")
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal, nil); err != nil {
		return nil, err
	}
	st, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, fmt.Errorf("structural schema: %w", err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, err
	}
	return &served{
		crd:        crd,
		gvk:        schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind},
		namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		hasStatus:  v.Subresources != nil && v.Subresources.Status != nil,
		structural: st,
		validator:  validator,
		cel:        cel.NewValidator(st, true, celconfig.PerCallLimit),
	}, nil
}

// The two methods below restate customResourceStrategy.PrepareForCreate and
// .Validate of k8s.io/apiextensions-apiserver v0.35.4
// (pkg/registry/customresource/strategy.go and validator.go) for a create of
// a kind without a scale subresource, calling the same functions in the same
// order. Importing that package instead would compile the API server's
// storage stack too (about 400 more packages, etcd's client among them). A
// hand run against kube-apiserver v1.35.4 gave every case the same verdict.

// prepareForCreate: a create cannot set status; generation starts at 1.
func (s *served) prepareForCreate(u *unstructured.Unstructured) {
	if s.hasStatus {
		delete(u.Object, "status")
	}
	u.SetGeneration(1)
}

func (s *served) validate(ctx context.Context, u *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	if u.GetKind() != s.gvk.Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), u.GetKind(), "must be "+s.gvk.Kind))
	}
	if u.GetAPIVersion() != s.gvk.GroupVersion().String() {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), u.GetAPIVersion(), "must be "+s.gvk.GroupVersion().String()))
	}
	if len(errs) > 0 {
		return errs
	}
	errs = append(errs, metavalidation.ValidateObjectMetaAccessor(u, s.namespaced, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.UnstructuredContent(), s.validator)...)
	errs = append(errs, schemaobjectmeta.Validate(nil, u.Object, s.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, s.structural, u.Object)...)
	// The CEL rules run only on an object without "blocking" errors (hasBlockingErr).
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
		}
	}
	celErrs, _ := s.cel.Validate(ctx, nil, s.structural, u.Object, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// parse turns one YAML document into the unstructured object the API server
// decodes (integers as int64, as its JSON decoder produces them).
func parse(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("YAML: %v\n%s", err, doc)
	}
	obj, _, err := unstructured.UnstructuredJSONScheme.Decode(j, nil, nil)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("decoded a %T, not one object:\n%s", obj, doc)
	}
	return u
}

// create runs doc through the API server's create path and returns the
// object as it would be stored and every error, formatted as the API server
// words them. Unknown fields are errors: kubectl asks for strict field
// validation by default, and package policy decodes strictly too.
func create(t testing.TB, doc string) (*unstructured.Unstructured, []string) {
	t.Helper()
	u := parse(t, doc)
	s, ok := crds(t)[u.GetKind()]
	if !ok {
		t.Fatalf("no CRD for kind %q", u.GetKind())
	}
	var errs []string
	for _, p := range structuralpruning.PruneWithOptions(u.Object, s.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		errs = append(errs, fmt.Sprintf("unknown field %q", p))
	}
	if s.namespaced && u.GetNamespace() == "" {
		u.SetNamespace("default") // kubectl's
	}
	structuraldefaulting.Default(u.Object, s.structural)
	s.prepareForCreate(u)
	for _, e := range s.validate(context.Background(), u) {
		errs = append(errs, e.Error())
	}
	sort.Strings(errs)
	return u, errs
}

// normalise gives docs (whole YAML documents) to package policy: Decode then
// Normalize, as the agent does. It returns the model's dump and the errors by
// the object they name; an error naming no object fails the test.
func normalise(t testing.TB, file string, docs []string) (string, map[string][]string) {
	t.Helper()
	objs, decodeErr := policy.Decode(file, []byte(strings.Join(docs, "\n---\n")))
	model, errs := policy.Normalize(objs)
	if decodeErr != nil {
		errs = append(errs, decodeErr)
	}
	byRef := map[string][]string{}
	for _, err := range errs {
		for _, e := range leaves(err) {
			var fe *policy.FieldError
			if !errors.As(e, &fe) || fe.Object.Name == "" {
				t.Fatalf("%s: error about no object: %v", file, e)
			}
			byRef[fe.Object.String()] = append(byRef[fe.Object.String()], fe.Error())
		}
	}
	return model.Dump(), byRef
}

// leaves unpacks errors.Join trees.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// isTabby reports whether a YAML document is a tabby.dev/v1alpha1 object.
func isTabby(doc []byte) bool {
	var tm struct {
		APIVersion string `json:"apiVersion"`
	}
	return yaml.Unmarshal(doc, &tm) == nil && tm.APIVersion == "tabby.dev/v1alpha1"
}
