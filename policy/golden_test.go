package policy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden loads every testdata/*.yaml, normalises it and compares the
// model's Dump, followed by every decoding and validation error, with
// testdata/<name>.golden. Run with -update to rewrite the golden files after
// checking the change is intended.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			got := renderFile(t, in)
			goldenPath := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the output (go test -run TestGolden -update rewrites it):\n%s",
					goldenPath, diffLines(string(want), got))
			}
		})
	}
}

// renderFile is the golden text of one input: Dump, then the errors.
func renderFile(t *testing.T, path string) string {
	t.Helper()
	objs, loadErr := LoadFiles(path)
	m, errs := Normalize(objs)
	var b strings.Builder
	b.WriteString(m.Dump())
	b.WriteString("errors:\n")
	if loadErr != nil {
		for _, line := range strings.Split(loadErr.Error(), "\n") {
			b.WriteString("  decode: " + line + "\n")
		}
	}
	for _, e := range errs {
		b.WriteString("  normalize: " + e.Error() + "\n")
	}
	// The second rendering must be identical: nothing may depend on map order.
	m2, _ := Normalize(objs)
	if again := m2.Dump(); again != m.Dump() {
		t.Errorf("Dump is not deterministic:\n%s", diffLines(m.Dump(), again))
	}
	return b.String()
}

// diffLines is a minimal line diff for test failure messages.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
		}
	}
	return b.String()
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
