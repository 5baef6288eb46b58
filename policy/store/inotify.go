package store

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchMask is what the directory watch asks for. IN_CLOSE_WRITE rather than
// IN_MODIFY: a file is decoded once its writer is done, never half written.
const watchMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_CREATE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// fsEvent is one inotify event about the watched directory.
type fsEvent struct {
	mask uint32
	name string // "" for events about the directory itself
}

// inotify watches one directory. Events arrive on events; the channel closes
// when the watcher is closed or reading fails.
type inotify struct {
	file   *os.File
	dir    string
	mu     sync.Mutex
	wd     int // -1 when the watch is lost
	events chan []fsEvent
	done   chan struct{}
	once   sync.Once
}

func newInotify(dir string) (*inotify, error) {
	// Non-blocking, so that os.NewFile registers the descriptor with the
	// runtime poller: Read then parks the goroutine and Close wakes it.
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &inotify{file: os.NewFile(uintptr(fd), "inotify"), dir: dir, wd: -1,
		events: make(chan []fsEvent, 16), done: make(chan struct{})}
	if err := w.rewatch(); err != nil {
		_ = w.file.Close()
		return nil, err
	}
	go w.read()
	return w, nil
}

// rewatch (re)adds the watch on the directory's path, which may now name a
// different directory than before.
func (w *inotify) rewatch() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Not File.Fd: that would switch the descriptor to blocking mode and
	// Close could no longer wake the reader.
	rc, err := w.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	var addErr error
	err = rc.Control(func(fd uintptr) {
		if w.wd >= 0 {
			_, _ = unix.InotifyRmWatch(int(fd), uint32(w.wd))
			w.wd = -1
		}
		w.wd, addErr = unix.InotifyAddWatch(int(fd), w.dir, watchMask)
	})
	if err == nil {
		err = addErr
	}
	if err != nil {
		w.wd = -1
		return fmt.Errorf("inotify_add_watch %s: %w", w.dir, err)
	}
	return nil
}

// lost marks the watch as gone (the directory was deleted or moved).
func (w *inotify) lost() {
	w.mu.Lock()
	w.wd = -1
	w.mu.Unlock()
}

// watching reports whether the watch is in place.
func (w *inotify) watching() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wd >= 0
}

func (w *inotify) close() {
	w.once.Do(func() {
		close(w.done)
		_ = w.file.Close()
	})
}

func (w *inotify) read() {
	defer close(w.events)
	buf := make([]byte, 64*1024)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return // closed, or a read error: the rescan keeps working
		}
		evs := parseEvents(buf[:n])
		select {
		case w.events <- evs:
		case <-w.done:
			return
		}
	}
}

// parseEvents decodes a buffer of struct inotify_event records.
func parseEvents(buf []byte) []fsEvent {
	var out []fsEvent
	for len(buf) >= unix.SizeofInotifyEvent {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		end := unix.SizeofInotifyEvent + int(raw.Len)
		if end > len(buf) {
			break
		}
		name := buf[unix.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		out = append(out, fsEvent{mask: raw.Mask, name: string(name)})
		buf = buf[end:]
	}
	return out
}
