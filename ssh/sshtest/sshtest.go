// Package sshtest holds helpers for tests that reach an SSH server, or fail to.
package sshtest

import (
	"syscall"
	"testing"
)

// ClosedPort returns a port on 127.0.0.1 that refuses every connection and that no other process
// can take while the test runs: a TCP socket bound to it and never listening holds it, and the
// kernel answers a connect to it with a reset. The socket is closed when the test ends.
func ClosedPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
