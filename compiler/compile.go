package compiler

import (
	"errors"
	"fmt"

	"github.com/tabbynet/tabby/compiler/ir"
	"github.com/tabbynet/tabby/policy"
)

// Compile compiles a whole model into one table. It is the incremental
// engine fed everything at once, so the two can never disagree. Any problem
// with the model (see ObjectError) is an error; the daemon uses an Engine
// instead, which keeps going around bad objects.
func Compile(m *policy.Model, o Options) (*ir.Table, error) {
	if err := checkDuplicates(m); err != nil {
		return nil, err
	}
	e := NewEngine(o)
	e.SetTiers(m.Tiers)
	for _, p := range m.Policies {
		e.UpsertPolicy(p)
	}
	for _, ep := range m.Endpoints {
		e.UpsertEndpoint(ep)
	}
	for _, ns := range m.NetworkSets {
		e.UpsertNetworkSet(ns)
	}
	e.Flush()
	if probs := e.Problems(); len(probs) > 0 {
		return nil, fmt.Errorf("compiling model: %w", errors.Join(probs...))
	}
	return e.Table(), nil
}

// checkDuplicates rejects two objects with one Ref: which one wins would
// depend on input order.
func checkDuplicates(m *policy.Model) error {
	seen := map[policy.Ref]bool{}
	var errs []error
	add := func(ref policy.Ref) {
		if seen[ref] {
			errs = append(errs, &ObjectError{Object: ref, Err: ErrDuplicate})
		}
		seen[ref] = true
	}
	for _, p := range m.Policies {
		add(p.Ref)
	}
	for _, ep := range m.Endpoints {
		add(ep.Ref)
	}
	for _, ns := range m.NetworkSets {
		add(ns.Ref)
	}
	if len(errs) > 0 {
		return fmt.Errorf("compiling model: %w", errors.Join(errs...))
	}
	return nil
}
