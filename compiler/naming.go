package compiler

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"

	"github.com/tabbynet/tabby/policy"
)

// Every name the compiler gives a kernel object is made here, one function per
// kind, so the enforcer, the CNI plugin, the lab and explain agree on them.

// Names of the fixed objects of the table.
const (
	DefaultTableName = "tabby"
	ForwardChain     = "forward"
	FromEndpointMap  = "from-endpoint"
	ToEndpointMap    = "to-endpoint"
)

// maxPolicyChainName bounds readable policy chain names; longer ones fall back
// to a hash. The kernel allows 256 bytes (NFT_CHAIN_MAXNAMELEN); the margin
// keeps room for the direction suffix and for nft's own quoting.
const maxPolicyChainName = 200

// InterfaceName is the host-side interface name of a pod's veth: "tab" plus 11
// hex digits of sha256("<namespace>/<pod>"), 14 bytes, within IFNAMSIZ-1 (15).
// The CNI plugin creates interfaces under this name and the verdict maps are
// keyed by it, so both sides must call this function.
func InterfaceName(namespace, pod string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + pod))
	return "tab" + hex.EncodeToString(sum[:6])[:11]
}

// hashID is a short stable hash of the parts, in the same alphabet and length
// as selectors.Selector.ID (16 base32 characters, 80 bits), so every hashed
// name in the table looks alike.
func hashID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return strings.ToLower(b32.EncodeToString(sum[:10]))
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// kindPrefix is the short prefix of a policy kind in chain names.
func kindPrefix(k policy.Kind) string {
	switch k {
	case policy.KindK8sNetworkPolicy:
		return "knp"
	case policy.KindClusterNetworkPolicy:
		return "cnp"
	case policy.KindTabbyNetworkPolicy:
		return "tnp"
	case policy.KindGlobalNetworkPolicy:
		return "gnp"
	}
	return "pol"
}

// PolicyChainName names the chain of one policy in one direction:
// knp/<ns>/<name>/<dir> for NetworkPolicy, cnp/<name>/<dir>,
// tnp/<ns>/<name>/<dir>, gnp/<name>/<dir>. A name that is too long or holds a
// byte nft identifiers do not allow becomes <prefix>-<hash>/<dir>.
func PolicyChainName(ref policy.Ref, d policy.Direction) string {
	prefix := kindPrefix(ref.Kind)
	var b strings.Builder
	b.WriteString(prefix)
	if prefix == "pol" {
		// Unknown kinds never get a readable name: the kind itself could
		// contain anything, and readable names must not collide.
		return prefix + "-" + hashID(string(ref.Kind), ref.Namespace, ref.Name) + "/" + d.String()
	}
	if ref.Namespace != "" {
		b.WriteString("/")
		b.WriteString(ref.Namespace)
	}
	b.WriteString("/")
	b.WriteString(ref.Name)
	b.WriteString("/")
	b.WriteString(d.String())
	name := b.String()
	if len(name) > maxPolicyChainName || !identOK(ref.Namespace) || !identOK(ref.Name) || ref.Name == "" {
		return prefix + "-" + hashID(string(ref.Kind), ref.Namespace, ref.Name) + "/" + d.String()
	}
	return name
}

// identOK reports whether s uses only bytes nft identifiers allow after the
// first letter, and no '/' (which separates the parts of a readable name, so
// that two different refs can never render the same name).
func identOK(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// TierChainName names a shared tier chain by a hash of its content key.
func TierChainName(key string) string { return "tier-" + hashID(key) }

// ProfileChainName names a shared profile chain: in-<hash> or eg-<hash>.
func ProfileChainName(d policy.Direction, key string) string {
	if d == policy.Egress {
		return "eg-" + hashID(key)
	}
	return "in-" + hashID(key)
}

// famSuffix is "-v4" or "-v6".
func famSuffix(fam int) string {
	if fam == 6 {
		return "-v6"
	}
	return "-v4"
}

// SelectorSetName names the address set of the endpoints and network sets a
// selector matches, in one family: sel-<selector ID>-v4|v6.
func SelectorSetName(selectorID string, fam int) string {
	return "sel-" + selectorID + famSuffix(fam)
}

// NetSetName names a set of literal networks by a hash of its canonical
// content: net-<hash>-v4|v6.
func NetSetName(canonical string, fam int) string {
	return "net-" + hashID(canonical) + famSuffix(fam)
}

// NamedPortSetName names the (address, protocol, port) set of the named ports
// of the endpoints a selector matches: np-<hash>-v4|v6.
func NamedPortSetName(canonical string, fam int) string {
	return "np-" + hashID(canonical) + famSuffix(fam)
}

// EndpointInterface is the host-side interface an endpoint's traffic uses:
// the discovered one when known, otherwise InterfaceName.
func EndpointInterface(ep *policy.Endpoint) string {
	if ep.Interface != "" {
		return ep.Interface
	}
	return InterfaceName(ep.Ref.Namespace, ep.Ref.Name)
}
