// Package agent is Tabby's node agent: it reads policy objects from a
// datastore, keeps an incremental compiler.Engine up to date and hands the
// resulting nftables table to an Applier (the enforcer) once per batch of
// changes. cmd/tabby wires it; e2e tests drive it directly.
//
// # Pipeline
//
//	store.Datastore (Dir: inotify + rescan;        InterfaceFinder.Watch
//	kubestore: informers)                         (netlink route/link updates)
//	     │ Upsert / Delete / Synced / Problems          │ interfaces may have moved
//	     ▼                                               ▼
//	recorder ── only records: pending[Ref] = object or delete, marks, kick ──┐
//	                                                                         │
//	timers (Clock): recheck pending interfaces, reconcile, retry a failed Sync│
//	     │                                                                   │
//	     ▼                                                                   ▼
//	loop goroutine (the only one that computes) ◄──────────────── kick (chan, coalesced)
//	  debounce: a batch runs Debounce after the last kick, at most MaxDelay
//	  after the first; nothing runs before the datastore's Synced
//	     │ batch = every change recorded so far
//	     ▼
//	normalizer: policy.Normalize of the changed objects (plus dependents of
//	  changed Namespaces, ServiceAccounts, Tiers) against the valid context
//	  objects; an invalid new version falls back to the object's last valid
//	  one (reported, still enforced); per-Ref outputs compared, only changes go on
//	     │ changed Tiers / Policies / Endpoints / NetworkSets
//	     ▼
//	publisher: local pods (spec.nodeName == Node) get Endpoint.Interface from
//	  InterfaceFinder (route to the pod IP); not found yet: published as
//	  remote (addresses in sets, no verdict map entry) and re-checked
//	     │ SetTiers / Upsert* / Delete* (only the diff)
//	     ▼
//	compiler.Engine ── Flush ──► Delta (empty: no Sync unless the last failed)
//	     │ Table()
//	     ▼
//	Applier.Sync(*ir.Table)   (enforcer: one netlink transaction per batch)
//	Reconciler.Reconcile()    (optional: drift check/repair every ReconcileInterval)
//
// Health: Handler serves /healthz (the loop is alive: not stuck in one batch
// for more than StallTimeout), /readyz (the first Sync after the datastore's
// initial list succeeded) and /status (JSON: last sync, counts, current
// problems).
//
// Invalid input never stops enforcement of the rest: decoding problems are
// reported by the datastore with file, document and field, and the file's
// previous objects stay; normalisation problems keep the object's last valid
// version; compiler problems (compiler.ObjectError) are reported and the
// engine leaves the object out.
//
// # Cost
//
// Normalisation is incremental: a batch normalises only the objects that
// changed, their dependents (see normalizer) and, as context, the tiers and
// the Namespace and ServiceAccounts of their own namespaces. Measured on 2
// cores with a cluster of e2e/synth's default size as raw objects (500
// namespaces, 10,000 pods, 2,000 NetworkPolicies, ~110 pods on this node;
// bench_test.go): one policy.Normalize of everything, what a batch would
// cost if it re-normalised the world, takes ~150-180 ms; a whole batch for
// one pod's labels (normalise, engine, Flush, fake Sync) ~0.35-0.45 ms; one
// namespace's labels (its 20 pods re-normalised) ~0.8 ms; the first batch of
// a start ~0.4 s.
//
// Shutdown: when Run's context ends the loop stops between batches. The agent
// never flushes or deletes the kernel table on exit: enforcement stays in place
// until the next agent takes over (it recompiles and syncs the difference).
//
// May import: the standard library, policy/, policy/store, compiler/,
// compiler/ir, github.com/vishvananda/netlink (interface discovery). It does
// not import the enforcer: cmd/tabby passes one in as an Applier.
package agent
