//go:build !linux

package bench

import (
	"os"
	"runtime"
	"time"
)

// fdatasync flushes f to the device; where fdatasync(2) is missing, with fsync.
func fdatasync(f *os.File) error { return f.Sync() }

// rss returns zeros: the resident set size is read from /proc, on Linux only.
func rss() (total, anon int64) { return 0, 0 }

func kernel() string { return runtime.GOOS }

func cpuModel() string { return "" }

// cpuTime returns 0: the CPU time is read with getrusage(2), on Linux only.
func cpuTime() time.Duration { return 0 }
