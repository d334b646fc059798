package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// A repository locked by another borg (e.g. a check from another host) fails with a clear line,
// and the archives already there are untouched.
func TestBackupLockedRepository(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	if r := w.run(w.backupArgs(h)...); r.code != 0 {
		t.Fatalf("first backup:\n%s", r)
	}
	// The lock holder runs as the server's borg user, on the server's side of the repository.
	holder := exec.Command("runuser", "-u", testEnv["SSH_USER"], "--", "borg", "with-lock", w.remoteRepoPath(), "sleep", "120")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	// borg has the lock once its roster names the exclusive holder (the lock.exclusive directory
	// comes first, the roster last).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(w.remoteRepoPath(), "lock.roster")); err == nil && strings.Contains(string(b), `"exclusive": [[`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("borg with-lock never took the lock")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := w.run(w.backupArgs(h, "--repo-lock-wait", "2")...)
	if r.code != 2 || !strings.Contains(r.stdout, "lock") || !strings.Contains(r.stderr, "what to do: another borg process holds the repository lock") {
		t.Fatalf("a locked repository must fail clearly:\n%s", r)
	}
	// `archives` says it could not read them, never "no archives yet"; `check` says the lock once.
	list := w.run(append([]string{"archives", "--repo", w.remoteRepo(), "--repo-lock-wait", "1"}, w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if list.code != 2 || strings.Contains(list.stdout, "no archives yet") || !strings.Contains(list.stdout, "could not read its archives") {
		t.Fatalf("archives of a locked repository:\n%s", list)
	}
	chk := w.run(append([]string{"check", "--repo", w.remoteRepo(), "--repo-lock-wait", "1"}, w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if n := strings.Count(chk.stdout+chk.stderr, "Failed to create/acquire the lock"); chk.code != 2 || n != 1 {
		t.Fatalf("check of a locked repository must say the lock error once (said %d times):\n%s", n, chk)
	}
	if st, _ := filepath.Glob(filepath.Join(w.stateDir, "staging", "*")); len(st) != 0 {
		t.Fatalf("staging left behind: %v", st)
	}
	holder.Process.Kill()
	holder.Wait()
	// borg with-lock was killed: break its stale lock the way the hint says, then look.
	if out, err := runWithPassphrase(w, []string{"borg", "break-lock", w.remoteRepo()}); err != nil {
		t.Fatalf("break-lock: %v %s", err, out)
	}
	if names := archiveNames(t, w, w.remoteRepo()); len(names) != 1 {
		t.Fatalf("the existing archive must be untouched: %v", names)
	}
}

// A full disk under the repository fails with a clear line; earlier archives stay intact and the
// repository stays consistent.
func TestBackupFullDisk(t *testing.T) {
	w := newWorld(t)
	mnt := filepath.Join(w.dir, "small-disk")
	os.MkdirAll(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("cannot mount a small tmpfs to fill up, as root (%v: %s)", err, out)
	}
	defer exec.Command("umount", "-l", mnt).Run()
	repo := filepath.Join(mnt, "repo")
	small := sourcestest.NewTree(t, filepath.Join(w.dir, "small"), func(o *sourcestest.Options) { o.FileSize = 16 << 10 })
	big := sourcestest.NewTree(t, filepath.Join(w.dir, "big"), func(o *sourcestest.Options) { o.FileSize = 1 << 20 })
	w.mustInit(t, repo)
	args := func(chtDir string) []string {
		return append([]string{"backup", "--repo", repo, "--cht-dir", chtDir, "--skip", "tls,credentials"}, w.common("")...)
	}
	if r := w.run(args(small.Root)...); r.code != 0 {
		t.Fatalf("small backup:\n%s", r)
	}
	time.Sleep(1100 * time.Millisecond)
	r := w.run(args(big.Root)...)
	if r.code != 2 || !strings.Contains(r.stdout, "no space left on device") || !strings.Contains(r.stderr, "what to do: free space") {
		t.Fatalf("a full disk must fail clearly:\n%s", r)
	}
	if names := archiveNames(t, w, repo); len(names) != 1 {
		t.Fatalf("the earlier archive must be intact and alone: %v", names)
	}
	if st, _ := filepath.Glob(filepath.Join(w.stateDir, "staging", "*")); len(st) != 0 {
		t.Fatalf("staging left behind: %v", st)
	}
	// Space freed: the next run backs up, and the repository is consistent.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v %s", err, out)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := w.run(args(big.Root)...); r.code != 0 {
		t.Fatalf("after space was freed:\n%s", r)
	}
	if names := archiveNames(t, w, repo); len(names) != 2 {
		t.Fatalf("want the earlier archive and the new one: %v", names)
	}
	if out, err := runWithPassphrase(w, []string{"borg", "check", repo}); err != nil {
		t.Fatalf("borg check after a full disk: %v\n%s", err, out)
	}
}
