package filestore

import (
	"os"

	"golang.org/x/sys/unix"
)

// FS is the file system the store writes its log through. The default is the operating
// system's; tests substitute one that injects faults (failed fdatasync, short or failed writes,
// a full disk).
type FS interface {
	// OpenFile opens a file as os.OpenFile does.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// SyncDir makes the creation, rename or removal of files in dir durable.
	SyncDir(dir string) error
}

// File is an open log file.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Datasync flushes the file's data to stable storage (fdatasync).
	Datasync() error
	Truncate(size int64) error
	Close() error
	// Fd is the descriptor the store maps into memory for reading.
	Fd() uintptr
}

// OSFS is the operating system's file system.
type OSFS struct{}

// OpenFile opens a file with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// SyncDir fsyncs the directory dir.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type osFile struct{ *os.File }

func (f osFile) Datasync() error { return unix.Fdatasync(int(f.File.Fd())) }
