// Package e2e holds Tabby's end-to-end material: the conformance corpus
// (testdata/conformance, format in its README), the scenario loader
// (e2e/scenario), the synthetic cluster generator (e2e/synth) and the demo.
// Its tests run the whole corpus through normalise → compile → trace.
package e2e
