package store

import (
	"crypto/sha256"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/tabbynet/tabby/policy"
)

// dirState is the bookkeeping of the directory datastore, free of I/O: which
// objects each file produced, which file's definition of a Ref wins, and
// what the handler currently holds. Not safe for concurrent use.
type dirState struct {
	files map[string]*fileState // by path
	// owners maps a Ref to the files defining it, each with the write
	// sequence number of its definition: the highest one wins.
	owners  map[policy.Ref]map[string]uint64
	emitted map[policy.Ref]policy.Object // what the handler holds
	seq     uint64
	log     *slog.Logger
}

type fileState struct {
	hash     [sha256.Size]byte
	hashed   bool // hash is that of the last content decoded
	objs     map[policy.Ref]policy.Object
	problems string // the reported problems, joined, to report changes only
	// docs holds the objects of the file's documents that decoded cleanly,
	// by content hash: a change to one document of a large file decodes
	// that document only (decoding is most of the cost of a change).
	docs map[[sha256.Size]byte][]policy.Object
}

func newDirState(log *slog.Logger) *dirState {
	return &dirState{
		files:   map[string]*fileState{},
		owners:  map[policy.Ref]map[string]uint64{},
		emitted: map[policy.Ref]policy.Object{},
		log:     log,
	}
}

// load takes a file's new content. An unchanged content is a no-op, so
// rescans and duplicate events cost one hash.
func (s *dirState) load(path string, data []byte, h Handler) {
	sum := sha256.Sum256(data)
	fs := s.files[path]
	if fs == nil {
		fs = &fileState{objs: map[policy.Ref]policy.Object{}}
		s.files[path] = fs
	}
	if fs.hashed && fs.hash == sum {
		return
	}
	fs.hash, fs.hashed = sum, true
	objs, errs := fs.decode(path, data)
	decoded := make(map[policy.Ref]policy.Object, len(objs))
	for _, o := range objs {
		decoded[o.Ref] = o // the last of one Ref wins, as in policy.Normalize
	}
	next := decoded
	if len(errs) > 0 {
		// Additive: what decoded replaces its previous version; everything
		// else the file produced before stays until it decodes cleanly.
		next = maps.Clone(fs.objs)
		maps.Copy(next, decoded)
	}
	s.report(path, fs, errs, h)
	s.setObjects(path, fs, next, h)
}

// decode is policy.Decode(path, data) with the file's documents that are
// unchanged since the last decode taken from fs.docs (with their new
// document number): the same objects, the same problems.
func (fs *fileState) decode(path string, data []byte) ([]policy.Object, []error) {
	var objs []policy.Object
	var errs []error
	docs := make(map[[sha256.Size]byte][]policy.Object)
	for i, doc := range policy.SplitDocuments(data) {
		src := policy.Source{File: path, Doc: i + 1}
		sum := sha256.Sum256(doc)
		if cached, ok := fs.docs[sum]; ok {
			for _, o := range cached {
				o.Source = src
				objs = append(objs, o)
			}
			docs[sum] = cached
			continue
		}
		o, err := policy.DecodeDocuments(src, doc)
		objs = append(objs, o...)
		if err != nil {
			errs = append(errs, flatten(err)...)
			continue
		}
		docs[sum] = o
	}
	fs.docs = docs
	return objs, errs
}

// readFailed records a read error: the file keeps its objects and is decoded
// again on the next attempt.
func (s *dirState) readFailed(path string, err error, h Handler) {
	fs := s.files[path]
	if fs == nil {
		fs = &fileState{objs: map[policy.Ref]policy.Object{}}
		s.files[path] = fs
	}
	fs.hashed = false
	s.report(path, fs, []error{err}, h)
}

// remove forgets a file and deletes (or hands over) its objects.
func (s *dirState) remove(path string, h Handler) {
	fs := s.files[path]
	if fs == nil {
		return
	}
	s.setObjects(path, fs, nil, h)
	s.report(path, fs, nil, h)
	delete(s.files, path)
}

// paths lists the known files, sorted.
func (s *dirState) paths() []string { return slices.Sorted(maps.Keys(s.files)) }

func (s *dirState) report(path string, fs *fileState, errs []error, h Handler) {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	key := strings.Join(msgs, "\n")
	if key == fs.problems {
		return
	}
	fs.problems = key
	h.Problems(path, errs)
}

// setObjects replaces the objects of one file and emits the resulting
// changes of the winning definitions.
func (s *dirState) setObjects(path string, fs *fileState, next map[policy.Ref]policy.Object, h Handler) {
	affected := map[policy.Ref]struct{}{}
	for ref, o := range next {
		affected[ref] = struct{}{}
		if old, ok := fs.objs[ref]; ok && sameDefinition(old, o) {
			continue
		}
		// A new or changed definition is a write: it wins over other files.
		s.seq++
		if s.owners[ref] == nil {
			s.owners[ref] = map[string]uint64{}
		}
		s.owners[ref][path] = s.seq
	}
	for ref := range fs.objs {
		if _, ok := next[ref]; !ok {
			affected[ref] = struct{}{}
			delete(s.owners[ref], path)
			if len(s.owners[ref]) == 0 {
				delete(s.owners, ref)
			}
		}
	}
	if next == nil {
		next = map[policy.Ref]policy.Object{}
	}
	fs.objs = next
	for _, ref := range slices.SortedFunc(maps.Keys(affected), compareRefs) {
		s.emit(ref, h)
	}
}

// emit hands the handler the winning definition of ref, if it changed.
func (s *dirState) emit(ref policy.Ref, h Handler) {
	owners := s.owners[ref]
	if len(owners) == 0 {
		if _, ok := s.emitted[ref]; ok {
			delete(s.emitted, ref)
			h.Delete(ref)
		}
		return
	}
	var win string
	var best uint64
	for p, seq := range owners {
		if seq > best {
			win, best = p, seq
		}
	}
	o := s.files[win].objs[ref]
	if prev, ok := s.emitted[ref]; ok && reflect.DeepEqual(prev, o) {
		return
	}
	if len(owners) > 1 {
		s.log.Warn("object defined in several files; the last written wins",
			"object", ref.String(), "winner", win, "files", slices.Sorted(maps.Keys(owners)))
	}
	s.emitted[ref] = o
	h.Upsert(o)
}

// sameDefinition compares two decodings of an object ignoring where they
// came from: moving a document within its file is not a new write.
func sameDefinition(a, b policy.Object) bool {
	a.Source, b.Source = policy.Source{}, policy.Source{}
	return reflect.DeepEqual(a, b)
}

// flatten splits joined errors into their members.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func compareRefs(a, b policy.Ref) int {
	if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}
