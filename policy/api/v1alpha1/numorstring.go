package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Form says whether a Protocol or Port was written as a number or a string.
type Form uint8

// Forms. The zero value is FormNumber, so Protocol{} / Port{} is the number 0
// (invalid for both, which validation reports).
const (
	FormNumber Form = iota
	FormString
)

// NumOrStringError is returned when decoding a JSON value that is neither an
// integer nor a string (null, a bool, a float, an object or a list) into a
// Protocol or Port.
type NumOrStringError struct {
	What  string // "protocol" or "port"
	Value string // the JSON text
}

func (e *NumOrStringError) Error() string {
	return fmt.Sprintf("invalid %s %s: must be an integer or a string", e.What, e.Value)
}

// The fields are tagged json:"-" because the JSON form is MarshalJSON's
// (a bare number or string), never an object. The two markers make
// controller-gen describe it as such: Type="" clears the "object" it would
// otherwise infer from the struct, leaving the structural schema
// {x-kubernetes-int-or-string: true}, which the API server types as integer
// or string. Protocol and Port add their own value rules.
//
// +kubebuilder:validation:Type=""
// +kubebuilder:validation:XIntOrString

// NumOrString is the shared representation of Protocol and Port, in the manner
// of intstr.IntOrString: it keeps the form a value was written in, so that a
// decoded object marshals back unchanged. NumVal is an int64 so that an
// out-of-range number (70000 as a port) decodes and validation can name the
// field; only non-integers fail to decode.
type NumOrString struct {
	Type   Form   `json:"-"`
	NumVal int64  `json:"-"`
	StrVal string `json:"-"`
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *NumOrString) UnmarshalJSON(b []byte) error { return v.unmarshal("value", b) }

func (v *NumOrString) unmarshal(what string, b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = NumOrString{Type: FormString, StrVal: s}
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return &NumOrStringError{What: what, Value: string(b)}
	}
	*v = NumOrString{Type: FormNumber, NumVal: n}
	return nil
}

// MarshalJSON implements json.Marshaler.
func (v NumOrString) MarshalJSON() ([]byte, error) {
	if v.Type == FormString {
		return json.Marshal(v.StrVal)
	}
	return []byte(strconv.FormatInt(v.NumVal, 10)), nil
}

// String returns the value as written.
func (v NumOrString) String() string {
	if v.Type == FormString {
		return v.StrVal
	}
	return strconv.FormatInt(v.NumVal, 10)
}

// The CRD rule accepts exactly what package policy accepts, including a
// number written as a string ("6", "+6", "006"), which policy reads as a
// number.
//
// +kubebuilder:validation:XIntOrString
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 255) : (self in ['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6', 'UDPLite'] || (self.matches('^[+-]?[0-9]+$') && int(self) >= 1 && int(self) <= 255))",message="must be TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or a number 1-255"

// Protocol is an IP protocol written as a name (TCP, UDP, SCTP, ICMP, ICMPv6,
// UDPLite) or a number (1-255).
type Protocol NumOrString

// ProtocolFromNumber returns a protocol written as a number.
func ProtocolFromNumber(n int64) Protocol { return Protocol{Type: FormNumber, NumVal: n} }

// ProtocolFromName returns a protocol written as a string.
func ProtocolFromName(s string) Protocol { return Protocol{Type: FormString, StrVal: s} }

// String returns the value as written.
func (p Protocol) String() string { return NumOrString(p).String() }

// UnmarshalJSON implements json.Unmarshaler.
func (p *Protocol) UnmarshalJSON(b []byte) error { return (*NumOrString)(p).unmarshal("protocol", b) }

// MarshalJSON implements json.Marshaler.
func (p Protocol) MarshalJSON() ([]byte, error) { return NumOrString(p).MarshalJSON() }

// The CRD rule mirrors package policy's port parser (tabbyParsePort): a
// string with a colon is a range of two numbers 1-65535, first <= last; a
// string of digits is a number; anything else must be a valid port name (as
// k8s.io/apimachinery's IsValidPortName). Whether a name is allowed at all
// (destination only) is checked on Rule.
//
// +kubebuilder:validation:XIntOrString
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : self.contains(':') ? (self.matches('^[+]?[0-9]+:[+]?[0-9]+$') && int(self.split(':')[0]) >= 1 && int(self.split(':')[1]) <= 65535 && int(self.split(':')[0]) <= int(self.split(':')[1])) : self.matches('^[+-]?[0-9]+$') ? (int(self) >= 1 && int(self) <= 65535) : (size(self) <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--'))",message="must be a port 1-65535, a range 'first:last' of ports with first <= last, or a port name (at most 15 of a-z, 0-9 and '-', with a letter, no '--', not starting or ending with '-')"

// Port is a port written as a number (80) or a string: a number ("80"), a
// range ("8000:8080") or a container port name ("http", destination only).
type Port NumOrString

// PortFromNumber returns a port written as a number.
func PortFromNumber(n int64) Port { return Port{Type: FormNumber, NumVal: n} }

// PortFromString returns a port written as a string.
func PortFromString(s string) Port { return Port{Type: FormString, StrVal: s} }

// String returns the value as written.
func (p Port) String() string { return NumOrString(p).String() }

// UnmarshalJSON implements json.Unmarshaler.
func (p *Port) UnmarshalJSON(b []byte) error { return (*NumOrString)(p).unmarshal("port", b) }

// MarshalJSON implements json.Marshaler.
func (p Port) MarshalJSON() ([]byte, error) { return NumOrString(p).MarshalJSON() }
