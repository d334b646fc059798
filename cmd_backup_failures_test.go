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
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(w.remoteRepoPath(), "lock.exclusive")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("borg with-lock never took the lock")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1100 * time.Millisecond)
	r := w.run(w.backupArgs(h, "--repo-lock-wait", "2")...)
	if r.code != 2 || !strings.Contains(r.stdout, "lock") || !strings.Contains(r.stderr, "what to do: another borg process holds the repository lock") {
		t.Fatalf("a locked repository must fail clearly:\n%s", r)
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
}

// Wrong passphrase, unknown host key, server down: one clear line each, nothing written.
func TestBackupBadAccessFailsClearly(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(w *world, args []string) []string
		wants []string
	}{
		{"wrong passphrase", func(w *world, a []string) []string {
			os.WriteFile(w.passFile, []byte("not the passphrase\n"), 0o600)
			return a
		}, []string{"incorrect", "what to do: the passphrase does not open"}},
		{"unknown host key", func(w *world, a []string) []string {
			empty := filepath.Join(w.dir, "empty_known_hosts")
			os.WriteFile(empty, nil, 0o600)
			return replaceFlag(a, "--known-hosts", empty)
		}, []string{"unknown", testEnv["SSH_HOST_KEY_FINGERPRINT"], "what to do: confirm"}},
		{"server down", func(w *world, a []string) []string {
			// --retries 0: a connection failure is otherwise retried for minutes.
			return append(replaceFlag(a, "--repo", strings.Replace(w.remoteRepo(), ":"+testEnv["SSH_PORT"]+"/", ":1/", 1)), "--retries", "0")
		}, []string{"cannot reach", "what to do:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			h := newCHTHost(t, w, sourcestest.LabelsOnly)
			w.mustInit(t, w.remoteRepo())
			r := w.run(tt.edit(w, w.backupArgs(h))...)
			if r.code != 2 {
				t.Fatalf("want exit 2:\n%s", r)
			}
			if n := len(lines(r.stderr, "cht-backup: what to do:")); n != 1 {
				t.Errorf("want exactly one what-to-do line, got %d:\n%s", n, r)
			}
			for _, want := range tt.wants {
				if !strings.Contains(r.stdout+r.stderr, want) {
					t.Errorf("output lacks %q:\n%s", want, r)
				}
			}
			os.WriteFile(w.passFile, []byte(w.passphrase+"\n"), 0o600)
			if names := archiveNames(t, w, w.remoteRepo()); len(names) != 0 {
				t.Fatalf("archives written: %v", names)
			}
			if st, _ := filepath.Glob(filepath.Join(w.stateDir, "staging", "*")); len(st) != 0 {
				t.Fatalf("staging left behind: %v", st)
			}
		})
	}
}
