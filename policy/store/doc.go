// Package store is the agent's datastore: the one interface through which it
// reads policy objects, so that a Kubernetes API implementation (informers)
// can be added next to the directory one without the compiler or the agent
// loop knowing where objects come from.
//
// In: a source of objects (today a directory of manifests). Out: calls on a
// Handler: Upsert(policy.Object) when an object is new or changed,
// Delete(policy.Ref) when it is gone, Synced() once after the initial list,
// and Problems(source, errs) whenever the set of problems of one source (a
// file) changes. Handler calls come from one goroutine, one at a time, and
// must not block: a handler records the change and returns (the agent's
// handler marks objects dirty and wakes its loop).
//
// # Directory datastore (Dir)
//
// Files directly in the directory (not in subdirectories) whose name ends in
// .yaml, .yml or .json are read; dotfiles and editor leftovers (#name#,
// name~) are ignored. Changes are seen through inotify (IN_CLOSE_WRITE,
// IN_MOVED_TO, IN_MOVED_FROM, IN_DELETE, IN_CREATE for symlinks, and the
// directory's own IN_DELETE_SELF/IN_MOVE_SELF), plus a periodic full rescan
// (RescanInterval) that catches anything inotify missed (queue overflow,
// changes through symlinks, a directory replaced underneath). A rename of a
// name starting with ".." (Kubernetes ConfigMap volumes swap "..data")
// triggers a full rescan.
//
// Per file the datastore remembers the objects it produced. A changed file is
// decoded again (as policy.Decode does, but documents whose bytes did not
// change and decoded cleanly last time are reused, so editing one object of a
// large file decodes one document) and only the difference is emitted:
//   - A file that decodes cleanly replaces its previous objects: new and
//     changed ones are upserted, vanished ones deleted.
//   - A file with problems (a document or object that fails to decode) is
//     reported with file, document and field (*policy.FieldError) through
//     Handler.Problems, and the update is additive only: objects that did
//     decode are upserted, and every object the file produced before STAYS
//     until the file decodes cleanly again. A typo never deletes anything.
//   - A file that cannot be read (other than "does not exist") is reported
//     and keeps its objects. A deleted (or renamed-away) file deletes its
//     objects.
//   - The same Ref from two files: the most recently written definition wins
//     (in the initial scan, files count as written in name order, as kubectl
//     apply -f DIR would apply them), with a warning in the log. When the
//     winner goes away, the other file's definition is emitted again.
//   - If the directory itself disappears, the datastore reports it and keeps
//     every object; when it is back, a rescan picks up whatever it holds.
//
// A Handler that implements Observer is told when each inotify event batch
// (or rescan) was received, before the changes it leads to: the agent
// measures change-to-enforced latency from it.
//
// Clock is injectable (tests drive the rescan timer); storetest holds a fake
// clock and a recording Handler.
//
// May import: the standard library, policy/, golang.org/x/sys/unix. Nothing of
// the compiler or the kernel dataplane.
package store
