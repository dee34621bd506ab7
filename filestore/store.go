package filestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// DefaultSegmentSize is the size of a log segment file when Options.SegmentSize is 0.
const DefaultSegmentSize = 128 << 20

// The index's memory: Pebble's memtable size, and the room its block cache keeps for index
// blocks beyond the memtables.
const (
	memTableSize   = 64 << 20
	blockCacheSize = 64 << 20
)

// Options configure [Open]. A nil *Options means all defaults.
type Options struct {
	// Limits bounds event and append sizes; zero fields take the defaults of [annals.Limits].
	Limits annals.Limits
	// SegmentSize is the size of each log segment file, created zero-filled in advance; default
	// [DefaultSegmentSize] (128 MiB). It must be at least twice Limits.MaxAppendSize plus 1 MiB,
	// and applies to segments created from now on.
	SegmentSize int64
	// FS is the file system the log is written through; nil means the operating system's.
	FS FS
	// Logger receives notices such as a torn tail repaired on open, and the index's (Pebble's)
	// errors; nil means slog.Default().
	Logger *slog.Logger
	// CachedStreams bounds how many stream states the writer keeps in memory; default 100,000.
	// Streams beyond it are looked up in the index when next written.
	CachedStreams int
}

// Store is the embedded durable store. It implements [annals.Store]; see the package
// documentation for how it works. All methods are safe for concurrent use.
type Store struct {
	// keeper makes the Store a lease.Keeper in the process (Acquire, Renew, Release, Leases):
	// the leases of the runners of a service that runs on this store. They are not kept on
	// disk: after a restart every lease is free.
	keeper
	dir     string
	logDir  string
	opts    Options
	fs      FS
	log     *slog.Logger
	db      *pebble.DB
	lockf   File
	segs    atomic.Pointer[segmentList]
	head    atomic.Pointer[head]
	durable atomic.Uint64 // log offset up to which the log is synced
	mark    *durableMark  // publishes durable to other processes (see Follow)

	reqs     chan *request
	closing  chan struct{} // closed by Close: stop taking requests
	stopped  chan struct{} // closed when the pipeline has stopped (but for a stuck indexer)
	failure  atomic.Pointer[error]
	failedCh chan struct{}  // closed on the first failure
	released chan struct{}  // closed when Close has released everything
	wg       sync.WaitGroup // the sequencer, the syncer and the zeroer
	// indexDone is closed when the indexer has returned; indexStuck when it is blocked in
	// Pebble for lack of space (see indexEvents), after which Close does not wait for it.
	indexDone  chan struct{}
	indexStuck chan struct{}
	stuckOnce  sync.Once
	// indexStall is set while Pebble holds writes back (a write stall).
	indexStall atomic.Bool

	// readers hold mu for reading while they touch the memory maps or the index; Close takes
	// it for writing before unmapping.
	mu struct {
		sync.RWMutex
		closed bool
	}

	seq   sequencer     // owned by the sequencer goroutine
	syncq syncQueue     // between the sequencer, the sync workers and the indexer
	zero  zeroer        // pre-fills the log ahead of the writer
	acked atomic.Uint64 // the last position of the appends answered
	// indexStopped is set when the indexer has failed; reads can then not catch up.
	indexStopped atomic.Bool
	// indexFatal holds the error of a failure Pebble reported through Fatalf (see
	// pebbleLogger): the index may then be inconsistent, and every read returns it.
	indexFatal atomic.Pointer[error]
	// indexSpace holds the error of a flush or compaction of the index that failed for lack
	// of space, until one succeeds (see Ready).
	indexSpace atomic.Pointer[error]
	indexErrs  chan error // Pebble's background errors, for flushIndex; never blocks Pebble
	indexLog   struct {
		sync.Mutex
		last    string // the last background error logged
		at      time.Time
		repeats int // times it came again since it was logged
	}
}

// head is the latest visible state of the log: every event up to pos is durable, indexed and
// may be read. A new head replaces it after each group, closing changed.
type head struct {
	pos     uint64 // last visible position; 0 when the log is empty
	end     uint64 // log offset just past the last visible group
	changed chan struct{}
}

// Open opens the data directory dir, creating it if needed, and recovers from a crash if the
// last process stopped without Close: it truncates a torn tail (a partly written group that
// was never acknowledged) and re-indexes the groups the index had not yet stored.
//
// It creates dir and any missing parent with the parent of each synced, so that the directory
// survives a power cut once something in it is acknowledged.
//
// It returns an error matching [annals.ErrCorrupt] when acknowledged data is damaged, an
// error when another process holds the directory, one matching syscall.ENOSPC when the file
// system has less than 8 MiB free, and the cause wrapped for any other failure.
func Open(dir string, opts *Options) (*Store, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.Limits = rules.Limits(o.Limits)
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if min := 2*int64(o.Limits.MaxAppendSize) + 1<<20; o.SegmentSize < min {
		return nil, fmt.Errorf("%w: segment size %d is below %d (twice the append limit plus 1 MiB)", annals.ErrInvalidArgument, o.SegmentSize, min)
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CachedStreams <= 0 {
		o.CachedStreams = 100_000
	}
	s := &Store{
		dir:        dir,
		logDir:     filepath.Join(dir, "log"),
		opts:       o,
		fs:         o.FS,
		log:        o.Logger,
		reqs:       make(chan *request, 1024),
		closing:    make(chan struct{}),
		stopped:    make(chan struct{}),
		failedCh:   make(chan struct{}),
		released:   make(chan struct{}),
		indexErrs:  make(chan error, 1),
		indexDone:  make(chan struct{}),
		indexStuck: make(chan struct{}),
	}
	if err := s.open(); err != nil {
		s.release()
		return nil, err
	}
	s.start()
	return s, nil
}

func (s *Store) open() error {
	if err := mkdirAll(s.fs, s.logDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	// The data directory may have been created by someone else, who did not sync its entry.
	if err := s.fs.SyncDir(filepath.Dir(filepath.Clean(s.dir))); err != nil {
		return fmt.Errorf("sync the parent of the data directory: %w", err)
	}
	lockf, err := lockDir(s.fs, s.dir)
	if err != nil {
		return err
	}
	s.lockf = lockf
	if err := checkFreeSpace(s.dir); err != nil {
		return err
	}
	popts := &pebble.Options{
		DisableWAL:   true,
		MemTableSize: memTableSize,
		// Pebble counts its memtables (the one being filled and any being flushed) against
		// the block cache's size: with less than that, no index block stays cached, and every
		// index lookup reads, checks and decompresses its blocks again.
		CacheSize:     2*memTableSize + blockCacheSize,
		Logger:        pebbleLogger{log: s.log, s: s},
		EventListener: s.indexEvents(),
	}
	// A file system of the tests may also take the index's writes, to fail them.
	if t, ok := s.fs.(interface{ tuneIndex(*pebble.Options) }); ok {
		t.tuneIndex(popts)
	}
	db, err := pebble.Open(filepath.Join(s.dir, "index"), popts)
	if err != nil {
		return fmt.Errorf("open index: %w", err)
	}
	s.db = db
	bases, err := listSegments(s.logDir)
	if err != nil {
		return fmt.Errorf("list log segments: %w", err)
	}
	if n := len(bases); n > 0 {
		// A crash while a segment was being created can leave it empty; it holds nothing.
		path := filepath.Join(s.logDir, segmentName(bases[n-1]))
		if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
			if err := s.fs.Remove(path); err != nil {
				return fmt.Errorf("remove empty segment: %w", err)
			}
			if err := s.fs.SyncDir(s.logDir); err != nil {
				return fmt.Errorf("remove empty segment: %w", err)
			}
			bases = bases[:n-1]
		}
	}
	var segs segmentList
	for _, base := range bases {
		seg, err := openSegment(s.fs, s.logDir, base, os.O_RDWR)
		if err != nil {
			s.segs.Store(&segs)
			return fmt.Errorf("open log segment: %w", err)
		}
		segs = append(segs, seg)
	}
	s.segs.Store(&segs)
	if len(segs) == 0 {
		if _, err := s.createSegment(0); err != nil {
			return err
		}
	}
	mark, err := s.recover()
	if err != nil {
		return err
	}
	s.head.Store(&head{pos: mark.nextPos - 1, end: mark.end, changed: make(chan struct{})})
	s.durable.Store(mark.end)
	if s.mark, err = openDurableMark(s.fs, s.logDir, mark.end); err != nil {
		return err
	}
	s.seq.init(s, mark)
	s.syncq.init(mark.end, mark.nextPos-1)
	s.acked.Store(mark.nextPos - 1)
	return nil
}

// minFreeSpace is the free space Open demands of the data directory's file system. Opening the
// index writes a new manifest and may flush, and Pebble retries a write that fails for lack
// of space without end: Open would never return.
const minFreeSpace = 8 << 20

// checkFreeSpace returns an error matching syscall.ENOSPC when the file system of dir has less
// than minFreeSpace free.
func checkFreeSpace(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < minFreeSpace {
		return fmt.Errorf("open %s: %w: %d bytes free, and opening the store needs %d MiB (free some space, then open again)", dir, syscall.ENOSPC, free, minFreeSpace>>20)
	}
	return nil
}

// lockDir takes an exclusive lock on dir, so that two processes never write one store.
func lockDir(fsys FS, dir string) (File, error) {
	f, err := createFile(fsys, filepath.Join(dir, "LOCK"), os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another process (stop it, or use another --data directory)", dir)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f, nil
}

// Close stops the store. Appends in progress finish (and are durable) or fail with
// [annals.ErrClosed]; subscriptions end with [annals.ErrClosed]. The index is flushed so that
// the next Open need not re-index. Close is safe to call more than once.
//
// When the index is stuck for lack of space (the store has then failed, see Ready), Close
// returns without waiting for it: it releases the log and returns an error saying the index
// was left open, since closing it would wait for space too. The index then holds its own
// lock until the process exits, and opening the directory again in the same process fails.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		<-s.released // a concurrent Close is finishing
		return nil
	}
	s.mu.closed = true
	close(s.closing)
	s.mu.Unlock()
	s.wg.Wait()
	stuck := false
	select {
	case <-s.indexDone:
	case <-s.indexStuck:
		select {
		case <-s.indexDone:
		default:
			stuck = true
		}
	}
	close(s.stopped)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(s.released)
	var err error
	if stuck {
		s.db = nil // still in use by the blocked indexer: left open
		err = fmt.Errorf("index left open, blocked for lack of space: %w", s.failed())
	} else if s.failure.Load() == nil {
		err = s.flushIndex()
	}
	return errors.Join(err, s.release())
}

// flushIndex writes the index's memtable to disk, so that the next Open need not re-index. It
// gives up at the first background error: Pebble retries a failed flush without end (on a
// full disk, say), and the log, not the index, is the durable record.
func (s *Store) flushIndex() error {
	for len(s.indexErrs) > 0 {
		<-s.indexErrs
	}
	done, err := s.db.AsyncFlush()
	if err == nil {
		select {
		case <-done:
		case err = <-s.indexErrs:
		}
	}
	if err != nil {
		return fmt.Errorf("flush index (the next open re-indexes from the log): %w", err)
	}
	return nil
}

// release closes whatever open or Close left open.
func (s *Store) release() error {
	var errs []error
	if s.db != nil {
		errs = append(errs, s.db.Close())
		s.db = nil
	}
	if segs := s.segs.Load(); segs != nil {
		for _, seg := range *segs {
			errs = append(errs, seg.close())
		}
		s.segs.Store(&segmentList{})
	}
	if s.mark != nil {
		errs = append(errs, s.mark.close())
		s.mark = nil
	}
	if s.lockf != nil {
		errs = append(errs, s.lockf.Close())
		s.lockf = nil
	}
	return errors.Join(errs...)
}

// fail stops the store after a storage failure: every later append gets an error, and the
// next Open recovers from the log. The error matches both annals.ErrClosed and err's cause
// (such as syscall.ENOSPC).
func (s *Store) fail(err error) error {
	err = fmt.Errorf("%w: stopped after a storage failure (reopen the store to recover): %w", annals.ErrClosed, err)
	if s.failure.CompareAndSwap(nil, &err) {
		close(s.failedCh)
		s.syncq.wakeAll() // the syncer and the sequencer may be waiting on the queue
	}
	return *s.failure.Load()
}

func (s *Store) failed() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// readLock takes the read lock that keeps the maps and the index open; it fails after Close,
// and after a fatal failure of the index (see stopIndex).
func (s *Store) readLock() error {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return annals.ErrClosed
	}
	if p := s.indexFatal.Load(); p != nil {
		s.mu.RUnlock()
		return *p
	}
	return nil
}

// stopIndex stops the whole store after a fatal failure of the index: appends fail as after
// any storage failure, and so do reads, since the index they would read may be inconsistent.
// Every error matches [annals.ErrClosed] and cause. Readers waiting for the index to catch up
// are woken.
func (s *Store) stopIndex(cause error) {
	err := s.fail(cause)
	s.indexFatal.CompareAndSwap(nil, &err)
	s.indexStopped.Store(true)
	if s.head.Load() != nil { // nil while Open opens the index
		s.publishHead(nil)
	}
}

// publishHead replaces the head with h, or with a copy of the current one when h is nil (which
// only wakes those waiting on it), and closes the old head's changed channel.
func (s *Store) publishHead(h *head) {
	for {
		old := s.head.Load()
		next := h
		if next == nil {
			next = &head{pos: old.pos, end: old.end, changed: make(chan struct{})}
		}
		if s.head.CompareAndSwap(old, next) {
			close(old.changed)
			return
		}
	}
}

func (s *Store) readUnlock() { s.mu.RUnlock() }

// Ready returns nil when the store can accept appends, and otherwise an error that says why,
// wrapping the cause (errors.Is(err, syscall.ENOSPC) for a full disk): after a storage
// failure (a failed write or sync, a fatal failure of the index, or an index whose writes are
// held back until a flush that fails for lack of space succeeds; each stops the store until
// it is reopened), after Close, or while the index cannot be flushed for lack of space. It is cheap and safe for concurrent
// use; a server reports it as readiness.
func (s *Store) Ready() error {
	if err := s.failed(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return annals.ErrClosed
	default:
	}
	if p := s.indexSpace.Load(); p != nil {
		return fmt.Errorf("index cannot be written: %w", *p)
	}
	return nil
}

// indexEvents returns the listener of Pebble's events: its background errors go to the log,
// and one caused by a full disk makes Ready report it until a flush or compaction succeeds.
//
// When Pebble's memtables are full it holds writes back (a write stall) until a flush makes
// room. If the flush fails for lack of space, the indexer's commit would wait for space
// without end, and behind it every append: so a write stall while the index's last flush or
// compaction failed for lack of space fails the store (indexStuckOnSpace), and appends, reads
// that wait for the index, and Close return.
//
// Pebble calls these with its own mutex held: they must not call into Pebble.
func (s *Store) indexEvents() *pebble.EventListener {
	cleared := func() { s.indexSpace.Store(nil) }
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			s.logIndexError(err)
			select {
			case s.indexErrs <- err:
			default:
			}
			if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
				s.indexSpace.Store(&err)
				if s.indexStall.Load() {
					s.indexStuckOnSpace(err)
				}
			}
		},
		WriteStallBegin: func(pebble.WriteStallBeginInfo) {
			s.indexStall.Store(true)
			if p := s.indexSpace.Load(); p != nil {
				s.indexStuckOnSpace(*p)
			}
		},
		WriteStallEnd: func() { s.indexStall.Store(false) },
		FlushEnd: func(info pebble.FlushInfo) {
			if info.Err == nil {
				cleared()
			}
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			if info.Err == nil {
				cleared()
			}
		},
	}
}

// indexStuckOnSpace fails the store because the index holds writes back until a flush that
// fails for lack of space succeeds: appends fail with an error matching [annals.ErrClosed]
// and cause, reads that wait for the index return it, and Close does not wait for the
// indexer.
func (s *Store) indexStuckOnSpace(cause error) {
	s.fail(fmt.Errorf("index cannot be written (it needs free space to flush): %w", cause))
	s.indexStopped.Store(true)
	s.stuckOnce.Do(func() { close(s.indexStuck) })
	if s.head.Load() != nil {
		s.publishHead(nil)
	}
}

// logIndexError logs a background error of the index. Pebble retries a failed flush at once
// and again, so an error repeated within a minute is counted, not logged again.
func (s *Store) logIndexError(err error) {
	s.indexLog.Lock()
	defer s.indexLog.Unlock()
	l := &s.indexLog
	msg := err.Error()
	if msg == l.last && time.Since(l.at) < time.Minute {
		l.repeats++
		return
	}
	s.log.Error("annals: index background error", "err", msg, "repeats", l.repeats)
	l.last, l.at, l.repeats = msg, time.Now(), 0
}

// pebbleLogger passes Pebble's messages to the store's logger, and handles the failures Pebble
// reports through Fatalf. Pebble calls Fatalf for failures it cannot recover from: a MANIFEST
// or other metadata it could not write (as on a full disk), but also a broken invariant or
// corruption it found. Pebble's own logger ends the process there; Pebble does not undo its
// state after the failed write, so the index may no longer match what Pebble holds in memory.
//
// In a running store (s set), every fatal failure stops the whole store (Store.stopIndex):
// appends and reads return an error matching [annals.ErrClosed] and the cause, and Ready
// reports it; the next Open recovers from the log, which is the durable record. When the
// cause is a failure of the machine's resources (ENOSPC, EDQUOT, EIO, EROFS, which a full or
// failing disk and a file system remounted read-only after errors produce), the process
// stays alive: the fault is outside the program, and a server can report it and be restarted
// once it is fixed. For any other cause (an invariant Pebble found broken, corruption, a bug),
// Fatalf then panics, as a broken internal invariant does elsewhere in Annals: Pebble's code
// after Fatalf does not expect to run on, and its background flushes and compactions would go
// on writing tables and manifest edits from a state it found inconsistent, which the next Open
// would trust. Ending the process stops them all at once.
//
// Without a store (Check, which opens the index read-only and closes it when done), Fatalf
// only records the failure in fatal, which Check returns as its error: reporting damage is
// what Check is for.
type pebbleLogger struct {
	log   *slog.Logger
	s     *Store     // nil when there is no store to stop (Check)
	fatal *fatalSlot // where Fatalf records its failure when s is nil
}

// fatalSlot keeps the first failure Pebble reported through Fatalf.
type fatalSlot struct{ err atomic.Pointer[error] }

func (f *fatalSlot) get() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("annals: index: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("annals: index: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	err := pebbleError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if cause, ok := a.(error); ok {
			err.cause = cause
			break
		}
	}
	l.log.Error("annals: index failure", "err", err)
	if l.fatal != nil {
		var e error = err
		l.fatal.err.CompareAndSwap(nil, &e)
	}
	if l.s == nil {
		return
	}
	l.s.stopIndex(err)
	if !resourceFailure(err) {
		panic(fmt.Sprintf("annals: index: %v (the store stopped; the next open recovers from the log)", err))
	}
}

// resourceFailure reports whether err comes from the machine's resources (a full or failing
// disk) rather than from the program.
func resourceFailure(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// pebbleError is a failure Pebble reported through Fatalf; it wraps the error among its
// arguments, so that errors.Is finds a cause such as syscall.ENOSPC.
type pebbleError struct {
	msg   string
	cause error
}

func (e pebbleError) Error() string { return "index: " + e.msg }
func (e pebbleError) Unwrap() error { return e.cause }
