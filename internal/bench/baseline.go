package bench

import (
	"context"
	"fmt"
	"os"
	"time"
)

// fsyncBlock is the size of each write of the fsync baselines.
const fsyncBlock = 4 << 10

// overwriteFileSize is the size of the file the overwrite variant writes over and over.
const overwriteFileSize = 64 << 20

// seqBlock is the size of each write of the sequential write baseline.
const seqBlock = 1 << 20

// fsyncLoop writes 4 KiB then calls fdatasync, in a loop until lim, on a new file in dir, and
// measures each write + fdatasync. With overwrite it first writes the whole file (64 MiB) and
// syncs it, then writes over it from the start (wrapping around); otherwise it appends, so
// that each fdatasync also records the file's new size. The file is removed afterwards.
func fsyncLoop(ctx context.Context, dir string, overwrite bool, lim limit) (l load, err error) {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return l, fmt.Errorf("fsync baseline: %w", err)
	}
	defer func() {
		cerr := f.Close()
		if rerr := os.Remove(f.Name()); cerr == nil {
			cerr = rerr
		}
		if err == nil && cerr != nil {
			err = fmt.Errorf("fsync baseline: %w", cerr)
		}
	}()
	buf := make([]byte, seqBlock)
	for i := range buf {
		buf[i] = byte(i*7 + i>>9)
	}
	if overwrite {
		for off := int64(0); off < overwriteFileSize; off += seqBlock {
			if _, err := f.WriteAt(buf, off); err != nil {
				return l, fmt.Errorf("fsync baseline: pre-write: %w", err)
			}
		}
		if err := f.Sync(); err != nil {
			return l, fmt.Errorf("fsync baseline: pre-write: %w", err)
		}
	}
	block := buf[:fsyncBlock]
	g := newGate(ctx, lim)
	defer g.close()
	lat := newSamples(maxSamples, 3)
	var off int64
	start := time.Now()
	for g.next() {
		t0 := time.Now()
		if overwrite {
			_, err = f.WriteAt(block, off)
			off = (off + fsyncBlock) % overwriteFileSize
		} else {
			_, err = f.Write(block)
		}
		if err == nil {
			err = fdatasync(f)
		}
		lat.add(time.Since(t0))
		if err != nil {
			return l, fmt.Errorf("fsync baseline: %w", err)
		}
		l.ops++
	}
	l.elapsed = time.Since(start)
	l.events = l.ops
	l.lat = sortedSamples(lat)
	return l, ctx.Err()
}

// seqWrite writes 1 MiB blocks to a new file in dir until it has written maxBytes or dur has
// passed, then calls fdatasync; the time includes the fdatasync. events counts bytes. The file
// is removed afterwards.
func seqWrite(ctx context.Context, dir string, maxBytes int64, dur time.Duration) (l load, err error) {
	f, err := os.CreateTemp(dir, "seq-*")
	if err != nil {
		return l, fmt.Errorf("sequential write baseline: %w", err)
	}
	defer func() {
		cerr := f.Close()
		if rerr := os.Remove(f.Name()); cerr == nil {
			cerr = rerr
		}
		if err == nil && cerr != nil {
			err = fmt.Errorf("sequential write baseline: %w", cerr)
		}
	}()
	buf := make([]byte, seqBlock)
	for i := range buf {
		buf[i] = byte(i*13 + i>>11)
	}
	start := time.Now()
	deadline := start.Add(dur)
	for l.events < maxBytes && time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := f.Write(buf); err != nil {
			return l, fmt.Errorf("sequential write baseline: %w", err)
		}
		l.ops++
		l.events += seqBlock
	}
	if err := fdatasync(f); err != nil {
		return l, fmt.Errorf("sequential write baseline: %w", err)
	}
	l.elapsed = time.Since(start)
	return l, ctx.Err()
}
