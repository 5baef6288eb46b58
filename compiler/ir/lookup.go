package ir

import "sort"

// Lookups by name. Tables keep Sets and Maps sorted by name and Chains with
// base chains first, then regular chains sorted by name, so a lookup is a
// binary search. A table that breaks the ordering still answers correctly,
// through a linear scan, only slower.

// Chain returns the chain called name, or nil.
func (t *Table) Chain(name string) *Chain {
	// Base chains are few and come first, in hook order rather than by name.
	nb := 0
	for nb < len(t.Chains) && t.Chains[nb].Base != nil {
		if t.Chains[nb].Name == name {
			return t.Chains[nb]
		}
		nb++
	}
	rest := t.Chains[nb:]
	i := sort.Search(len(rest), func(i int) bool { return rest[i].Name >= name })
	if i < len(rest) && rest[i].Name == name {
		return rest[i]
	}
	for _, c := range rest {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Set returns the set called name, or nil.
func (t *Table) Set(name string) *Set {
	i := sort.Search(len(t.Sets), func(i int) bool { return t.Sets[i].Name >= name })
	if i < len(t.Sets) && t.Sets[i].Name == name {
		return t.Sets[i]
	}
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Map returns the verdict map called name, or nil.
func (t *Table) Map(name string) *Map {
	i := sort.Search(len(t.Maps), func(i int) bool { return t.Maps[i].Name >= name })
	if i < len(t.Maps) && t.Maps[i].Name == name {
		return t.Maps[i]
	}
	for _, m := range t.Maps {
		if m.Name == name {
			return m
		}
	}
	return nil
}
