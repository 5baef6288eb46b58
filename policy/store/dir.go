package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRescanInterval is how often Dir rereads its directory in full.
const DefaultRescanInterval = 30 * time.Second

// DirOptions configure a Dir. Zero values take defaults.
type DirOptions struct {
	// RescanInterval is the period of the full rescan (the safety net under
	// inotify). Default DefaultRescanInterval.
	RescanInterval time.Duration
	Clock          Clock        // default RealClock
	Logger         *slog.Logger // default slog.Default()
	// NoInotify runs on rescans alone (tests of the safety net).
	NoInotify bool
}

// Dir is the directory datastore: see the package documentation.
type Dir struct {
	path string
	opts DirOptions
	log  *slog.Logger
	// dirProblem is the directory-level problem last reported ("" for none),
	// so that each rescan does not report it again.
	dirProblem string
}

// NewDir returns a datastore reading the manifests in dir.
func NewDir(dir string, o DirOptions) *Dir {
	if o.RescanInterval <= 0 {
		o.RescanInterval = DefaultRescanInterval
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Dir{path: dir, opts: o, log: o.Logger.With("datastore", dir)}
}

// Relevant reports whether a file name is one Dir reads: *.yaml, *.yml or
// *.json, not a dotfile, not an editor's #autosave# or backup~.
func Relevant(name string) bool {
	if name == "" || name[0] == '.' || name[0] == '#' || strings.HasSuffix(name, "~") {
		return false
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Run implements Datastore. The directory must be readable at start; later it
// may disappear and come back (its objects stay meanwhile).
func (d *Dir) Run(ctx context.Context, h Handler) error {
	if _, err := os.Stat(d.path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	st := newDirState(d.log)
	var w *inotify
	if !d.opts.NoInotify {
		// Watch before the first scan, so that no change falls between them.
		var err error
		if w, err = newInotify(d.path); err != nil {
			d.log.Warn("watching the manifest directory failed; relying on periodic rescans", "error", err,
				"rescan", d.opts.RescanInterval.String())
			w = nil
		} else {
			defer w.close()
		}
	}
	if err := d.scan(st, h); err != nil {
		return fmt.Errorf("store: initial scan: %w", err)
	}
	h.Synced()

	timer := d.opts.Clock.NewTimer(d.opts.RescanInterval)
	defer timer.Stop()
	var events <-chan []fsEvent
	if w != nil {
		events = w.events
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case evs, ok := <-events:
			if !ok {
				d.log.Warn("inotify stopped; relying on periodic rescans")
				events = nil
				continue
			}
			observe(h, d.opts.Clock)
			if d.handleEvents(st, w, evs, h) {
				d.rescan(st, w, h)
			}
		case <-timer.C():
			observe(h, d.opts.Clock)
			d.rescan(st, w, h)
			timer.Reset(d.opts.RescanInterval)
		}
	}
}

// observe tells an Observer handler that what follows was seen now.
func observe(h Handler, clk Clock) {
	if o, ok := h.(Observer); ok {
		o.Observed(clk.Now())
	}
}

// handleEvents applies inotify events; it returns true when a full rescan is
// needed instead.
func (d *Dir) handleEvents(st *dirState, w *inotify, evs []fsEvent, h Handler) (rescan bool) {
	for _, ev := range evs {
		switch {
		case ev.mask&unix.IN_Q_OVERFLOW != 0:
			d.log.Warn("inotify queue overflowed; rescanning")
			rescan = true
		case ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
			// The directory went away or moved: watch its path again when
			// something is there, and reread it.
			w.lost()
			rescan = true
		case strings.HasPrefix(ev.name, ".."):
			// A Kubernetes ConfigMap volume swapped its "..data" symlink:
			// every file's target may have changed.
			rescan = true
		case !Relevant(ev.name):
		case ev.mask&(unix.IN_MOVED_FROM|unix.IN_DELETE) != 0:
			st.remove(filepath.Join(d.path, ev.name), h)
		case ev.mask&unix.IN_CREATE != 0:
			// A regular file is read when its writer closes it (IN_CLOSE_WRITE);
			// a symlink never sees a write, so read it now.
			p := filepath.Join(d.path, ev.name)
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				d.loadFile(st, p, h)
			}
		case ev.mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) != 0:
			d.loadFile(st, filepath.Join(d.path, ev.name), h)
		}
	}
	return rescan
}

// rescan rereads the whole directory, watching it again if the watch was lost.
func (d *Dir) rescan(st *dirState, w *inotify, h Handler) {
	if w != nil && !w.watching() {
		if err := w.rewatch(); err != nil {
			d.log.Debug("manifest directory not watchable yet", "error", err)
		}
	}
	if err := d.scan(st, h); err != nil {
		d.log.Warn("rescanning the manifest directory failed; keeping every object", "error", err)
	}
}

// scan reads every relevant file (in name order, which makes the initial
// last-writer-wins order that of kubectl apply -f DIR) and removes files that
// are gone. If the directory cannot be listed, nothing is removed.
func (d *Dir) scan(st *dirState, h Handler) error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		err = fmt.Errorf("reading manifest directory: %w", err)
		if err.Error() != d.dirProblem {
			d.dirProblem = err.Error()
			h.Problems("", []error{err})
		}
		return err
	}
	if d.dirProblem != "" {
		d.dirProblem = ""
		h.Problems("", nil)
	}
	present := map[string]bool{}
	for _, e := range entries {
		if !Relevant(e.Name()) {
			continue
		}
		p := filepath.Join(d.path, e.Name())
		if d.loadFile(st, p, h) {
			present[p] = true
		}
	}
	for _, p := range st.paths() {
		if !present[p] {
			st.remove(p, h)
		}
	}
	return nil
}

// loadFile reads and decodes one file. It returns false when the path is not
// (or no longer) a regular file, after removing what it produced.
func (d *Dir) loadFile(st *dirState, p string, h Handler) bool {
	fi, err := os.Stat(p) // follows symlinks
	if err == nil && !fi.Mode().IsRegular() {
		st.remove(p, h)
		return false
	}
	var data []byte
	if err == nil {
		data, err = os.ReadFile(p)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.remove(p, h)
		return false
	case err != nil:
		d.log.Warn("reading manifest failed; keeping its objects", "file", p, "error", err)
		st.readFailed(p, err, h) // a *fs.PathError: names the file
		return true
	}
	st.load(p, data, h)
	return true
}
