//go:build !linux && !windows

package main

import "syscall"

// childAttr puts a child in a process group of its own, so that Ctrl-C reaches only the
// launcher, which stops the children in order.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
