package ssh

import (
	"os"
	"os/exec"
	"os/user"
	"syscall"
	"testing"
)

// closedPort returns a port on 127.0.0.1 that refuses every connection and that no other process
// can take while the test runs: a TCP socket bound to it and never listening holds it, and the
// kernel answers a connect to it with a reset. The socket is closed when the test ends.
func closedPort(t *testing.T) int {
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

// tmpfsMagic is TMPFS_MAGIC, the f_type statfs reports for a tmpfs.
const tmpfsMagic = 0x01021994

// quietDisk returns a directory under the test server's repository root that sits on a small
// tmpfs of its own, readable by the server's borg account: its free space changes only by what
// the test writes there, so a measurement through SSH can be compared exactly with statfs. The
// tmpfs is unmounted when the test ends. loadTestEnv has made sure the tests run as root.
func quietDisk(t *testing.T, env testEnv) string {
	t.Helper()
	u, err := user.Lookup(env.User)
	if err != nil {
		t.Fatalf("the server's account %s: %v", env.User, err)
	}
	dir, err := os.MkdirTemp(env.RepoRoot, "quiet-disk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	opts := "size=16m,mode=0755,uid=" + u.Uid + ",gid=" + u.Gid
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a 16 MiB tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		t.Fatalf("%s is not on its own tmpfs (filesystem type %#x, %v)", dir, st.Type, err)
	}
	return dir
}

// statfsFree is the space an unprivileged user may still write under dir, in bytes, as df -P
// reports it.
func statfsFree(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}
