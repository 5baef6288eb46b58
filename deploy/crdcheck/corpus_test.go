package crdcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tabbynet/tabby/policy"
)

// corpusGlob is the conformance corpus's Tabby section: real policies that
// the end-to-end tests enforce.
const corpusGlob = "../../e2e/testdata/conformance/tabby/*.yaml"

// TestCorpus gives every tabby.dev object of the conformance corpus to the
// API server's create path and to the normaliser: the verdicts must agree,
// and the stored (defaulted) objects must normalise to the same model as the
// originals, so that Kubernetes mode enforces what file mode enforces.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob(corpusGlob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no corpus files at %s", corpusGlob)
	}
	objects := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var original, stored []string
		for _, doc := range policy.SplitDocuments(data) {
			if !isTabby(doc) {
				continue
			}
			u, errs := create(t, string(doc))
			if len(errs) > 0 {
				t.Errorf("%s: API server rejects %s:\n  %s", f, u.GetName(), strings.Join(errs, "\n  "))
			}
			original = append(original, string(doc))
			stored = append(stored, mustYAML(t, u.Object))
		}
		if len(original) == 0 {
			continue
		}
		objects += len(original)
		before, errsBefore := normalise(t, filepath.Base(f), original)
		after, errsAfter := normalise(t, filepath.Base(f), stored)
		// The corpus holds valid objects only, so any normaliser error is
		// a disagreement (or an API server rejection reported above).
		if len(errsBefore) > 0 {
			t.Errorf("%s: the normaliser rejects: %v", f, errsBefore)
		}
		if len(errsAfter) > 0 {
			t.Errorf("%s: the normaliser rejects stored objects: %v", f, errsAfter)
		}
		if before != after {
			t.Errorf("%s: stored objects mean something else:\n--- as written\n%s--- as stored\n%s", f, before, after)
		}
	}
	t.Logf("%d objects in %d files", objects, len(files))
}
