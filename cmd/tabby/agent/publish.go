package agent

import (
	"maps"
	"reflect"
	"slices"

	"github.com/tabbynet/tabby/compiler"
	"github.com/tabbynet/tabby/policy"
)

// publisher feeds the normaliser's changes to the engine, only the diff, and
// gives local endpoints their discovered interface. Only the loop goroutine
// uses it.
type publisher struct {
	eng    *compiler.Engine
	norm   *normalizer
	node   string
	finder InterfaceFinder // nil: local interfaces are compiler.InterfaceName

	tiersSet  bool
	published map[policy.Ref]policy.Endpoint // as the engine has them
	pending   map[policy.Ref]error           // local endpoints without an interface yet
	local     int                            // published endpoints with Node == node
	owners    map[string]policy.Ref          // interface -> the local endpoint holding it
}

func newPublisher(eng *compiler.Engine, norm *normalizer, node string, finder InterfaceFinder) *publisher {
	return &publisher{eng: eng, norm: norm, node: node, finder: finder,
		published: map[policy.Ref]policy.Endpoint{}, pending: map[policy.Ref]error{}, owners: map[string]policy.Ref{}}
}

// apply pushes one batch of model changes to the engine. With recheckAll,
// every local endpoint's interface is looked up again (routes or links
// changed); pending ones always are.
func (p *publisher) apply(ch normChange, recheckAll bool) {
	if ch.tiers || !p.tiersSet {
		p.eng.SetTiers(p.norm.tiers)
		p.tiersSet = true
	}
	for _, ref := range ch.policies {
		if pol, ok := p.norm.policies[ref]; ok {
			p.eng.UpsertPolicy(pol)
		} else {
			p.eng.DeletePolicy(ref)
		}
	}
	for _, ref := range ch.netsets {
		if ns, ok := p.norm.netsets[ref]; ok {
			p.eng.UpsertNetworkSet(ns)
		} else {
			p.eng.DeleteNetworkSet(ref)
		}
	}
	todo := map[policy.Ref]struct{}{}
	for _, ref := range ch.endpoints {
		todo[ref] = struct{}{}
	}
	maps.Copy(todo, mapKeys(p.pending))
	if recheckAll && p.finder != nil {
		for ref, ep := range p.norm.endpoints {
			if ep.Node == p.node {
				todo[ref] = struct{}{}
			}
		}
	}
	released := false
	for _, ref := range slices.SortedFunc(maps.Keys(todo), compareRefs) {
		released = p.endpoint(ref) || released
	}
	if released {
		// An interface was freed: a pod waiting on a conflict may take it.
		for _, ref := range slices.SortedFunc(maps.Keys(p.pending), compareRefs) {
			p.endpoint(ref)
		}
	}
}

func mapKeys[V any](m map[policy.Ref]V) map[policy.Ref]struct{} {
	out := make(map[policy.Ref]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}

// endpoint publishes the current version of one endpoint. It reports whether
// an interface was released.
func (p *publisher) endpoint(ref policy.Ref) (released bool) {
	ep, ok := p.norm.endpoints[ref]
	if !ok {
		delete(p.pending, ref)
		released = p.release(ref, "")
		if old, was := p.published[ref]; was {
			p.count(old, -1)
			delete(p.published, ref)
			p.eng.DeleteEndpoint(ref)
		}
		return released
	}
	if p.finder != nil && p.node != "" && ep.Node == p.node {
		iface, err := findInterface(p.finder, ep.IPs)
		if holder, taken := p.owners[iface]; err == nil && taken && holder != ref {
			err = &InterfaceConflictError{Interface: iface, Holder: holder.Namespace + "/" + holder.Name}
		}
		if err != nil {
			// Published as remote until found: its addresses still count
			// in other policies' sets, but it gets no verdict map entry
			// under a guessed interface name.
			p.pending[ref] = err
			released = p.release(ref, "")
			ep.Node = ""
		} else {
			delete(p.pending, ref)
			released = p.release(ref, iface)
			p.owners[iface] = ref
			ep.Interface = iface
		}
	} else {
		// Remote (or moved away from this node): it holds no interface.
		delete(p.pending, ref)
		released = p.release(ref, "")
	}
	old, had := p.published[ref]
	if had && reflect.DeepEqual(old, ep) {
		return released
	}
	if had {
		p.count(old, -1)
	}
	p.count(ep, 1)
	p.published[ref] = ep
	p.eng.UpsertEndpoint(ep)
	return released
}

// release frees the interface ref holds unless it is keep.
func (p *publisher) release(ref policy.Ref, keep string) bool {
	old := p.published[ref].Interface
	if old == "" || old == keep || p.owners[old] != ref {
		return false
	}
	delete(p.owners, old)
	return true
}

func (p *publisher) count(ep policy.Endpoint, d int) {
	if p.node != "" && ep.Node == p.node {
		p.local += d
	}
}

// counts returns the number of published endpoints and of local ones (those
// with verdict map entries when governed).
func (p *publisher) counts() (endpoints, local int) { return len(p.published), p.local }
