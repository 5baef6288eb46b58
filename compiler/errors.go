package compiler

import (
	"errors"

	"github.com/tabbynet/tabby/policy"
)

// Reasons a model object cannot be compiled as given. They come wrapped in an
// *ObjectError naming the object; test with errors.Is.
var (
	ErrInvalidAction  = errors.New("invalid rule action")
	ErrUnknownTier    = errors.New("policy names a tier that does not exist")
	ErrNoSubject      = errors.New("policy has no subject selector")
	ErrDuplicate      = errors.New("duplicate object")
	ErrInvalidDefault = errors.New("tier default action must be Deny or Pass")
)

// ObjectError is a problem with one object of the model. The engine keeps
// compiling everything else: a policy with a problem applies as far as it can
// (a policy in an unknown tier or without a subject governs nothing, a rule
// with an invalid action is left out), and a tier with an invalid default
// denies.
type ObjectError struct {
	Object policy.Ref
	Err    error
}

func (e *ObjectError) Error() string { return e.Object.String() + ": " + e.Err.Error() }

func (e *ObjectError) Unwrap() error { return e.Err }
