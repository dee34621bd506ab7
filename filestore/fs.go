package filestore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FS is the file system the store writes its data directory through (except the index, which
// Pebble writes through its own). The default is the operating system's; tests substitute one
// that injects faults (failed fdatasync, short or failed writes, a full disk) or drops what was
// never synced, as a power cut does.
type FS interface {
	// OpenFile opens a file as os.OpenFile does.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Mkdir creates a directory as os.Mkdir does.
	Mkdir(name string, perm os.FileMode) error
	// Remove removes a file as os.Remove does.
	Remove(name string) error
	// SyncDir makes the creation, rename or removal of files in dir durable.
	SyncDir(dir string) error
}

// File is an open file of the data directory.
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

// Mkdir creates a directory with os.Mkdir.
func (OSFS) Mkdir(name string, perm os.FileMode) error { return os.Mkdir(name, perm) }

// Remove removes a file with os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

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

// mkdirAll creates dir and any missing parents, and makes each creation durable by syncing the
// parent it was created in (as Pebble's mkdirAllAndSyncParents does): a directory entry that
// was never synced may vanish in a power cut, and with it everything under it, however well
// synced.
func mkdirAll(fsys FS, dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: unix.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(fsys, parent, perm); err != nil {
			return err
		}
	}
	if err := fsys.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := fsys.SyncDir(parent); err != nil {
		return &fs.PathError{Op: "sync", Path: parent, Err: err}
	}
	return nil
}

// createFile creates (or opens) the file name, and when it did not exist, syncs the directory
// it was created in so that its entry survives a power cut.
func createFile(fsys FS, name string, flag int, perm os.FileMode) (File, error) {
	_, err := os.Lstat(name)
	existed := err == nil
	f, err := fsys.OpenFile(name, flag|os.O_CREATE, perm)
	if err != nil {
		return nil, err
	}
	if !existed {
		if err := fsys.SyncDir(filepath.Dir(name)); err != nil {
			f.Close()
			return nil, &fs.PathError{Op: "sync", Path: filepath.Dir(name), Err: err}
		}
	}
	return f, nil
}
