package ssh

import (
	"os"
	"os/exec"
	"os/user"
	"syscall"
	"testing"
)

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
