package main

import "syscall"

// childAttr is nil on Windows: children share the launcher's console.
func childAttr() *syscall.SysProcAttr { return nil }
