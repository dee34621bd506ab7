package main

import "syscall"

// childAttr puts a child in a process group of its own, so that Ctrl-C reaches only the
// launcher, which stops the children in order, and has the kernel kill the child when the
// launcher dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
