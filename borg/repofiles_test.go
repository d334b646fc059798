package borg

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// localBorg runs the real borg on a local repository of this test.
type localBorg struct {
	t    *testing.T
	repo string
	env  []string
}

func newLocalBorg(t *testing.T) *localBorg {
	t.Helper()
	if _, err := exec.LookPath("borg"); err != nil {
		t.Skip("SKIPPED: borg is not installed (scripts/test-env.sh installs it)")
	}
	dir := t.TempDir()
	b := &localBorg{t: t, repo: filepath.Join(dir, "repo"),
		env: append(os.Environ(), "BORG_PASSPHRASE=test-only", "BORG_BASE_DIR="+filepath.Join(dir, "base"))}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	b.run("init", "--encryption", "repokey-blake2", "--append-only", b.repo)
	return b
}

func (b *localBorg) run(args ...string) {
	b.t.Helper()
	cmd := exec.Command("borg", args...)
	cmd.Env = b.env
	cmd.Dir = filepath.Dir(b.repo)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("borg %v: %v\n%s", args, err, out)
	}
}

func (b *localBorg) backup(name, content string) {
	b.t.Helper()
	if err := os.WriteFile(filepath.Join(filepath.Dir(b.repo), "src", "f"), []byte(content), 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.run("create", b.repo+"::"+name, "src")
}

func (b *localBorg) activity() *Activity {
	b.t.Helper()
	a, err := ReadActivity(b.repo)
	if err != nil {
		b.t.Fatal(err)
	}
	return a
}

func TestActivityFreshRepositoryHasNoArchive(t *testing.T) {
	b := newLocalBorg(t)
	a := b.activity()
	if !a.LastArchive.IsZero() {
		t.Errorf("a repository with no archive reports one at %v (transaction %d)", a.LastArchive, a.LastArchiveSegment)
	}
	if a.LastCommit.IsZero() || !a.AppendOnly || a.Bytes == 0 || a.FreeBytes <= 0 {
		t.Errorf("init's commit, append-only flag, size or free space not read: %+v", a)
	}
}

func TestActivityTellsArchivesFromPruneAndCompaction(t *testing.T) {
	b := newLocalBorg(t)
	b.backup("h-1", "one")
	first := b.activity()
	if first.LastArchive.IsZero() || time.Since(first.LastArchive) > time.Minute {
		t.Fatalf("the backup just made is not seen: %+v", first)
	}
	b.backup("h-2", "two")
	b.backup("h-3.checkpoint", "three")
	afterBackups := b.activity()
	if afterBackups.LastArchiveSegment <= first.LastArchiveSegment {
		t.Fatalf("later backups not seen: first %+v, now %+v", first, afterBackups)
	}

	b.run("prune", "--keep-last", "1", "--glob-archives", "h-*", b.repo)
	afterPrune := b.activity()
	if afterPrune.LastArchiveSegment != afterBackups.LastArchiveSegment {
		t.Errorf("prune taken for a new archive: transaction %d, the last backup's was %d", afterPrune.LastArchiveSegment, afterBackups.LastArchiveSegment)
	}
	if afterPrune.LastCommitSegment <= afterBackups.LastCommitSegment {
		t.Errorf("prune's commit not seen: %+v", afterPrune)
	}

	b.run("config", b.repo, "append_only", "0")
	b.run("compact", b.repo)
	afterCompact := b.activity()
	if afterCompact.Bytes >= afterPrune.Bytes {
		t.Errorf("compaction freed nothing: %d bytes, %d before", afterCompact.Bytes, afterPrune.Bytes)
	}
	// Compaction merges the transactions: the last archive is then bounded by the client's last
	// logged commit (the prune), never the compaction's own.
	if !afterCompact.Estimated || afterCompact.LastArchiveSegment != afterPrune.LastCommitSegment || afterCompact.LastArchive.Before(afterBackups.LastArchive) {
		t.Errorf("after compaction: %+v; want the prune's commit (transaction %d), marked estimated", afterCompact, afterPrune.LastCommitSegment)
	}

	b.run("config", b.repo, "append_only", "1") // the client writes append-only again
	b.backup("h-4", "four")
	next := b.activity()
	if next.Estimated || next.LastArchiveSegment <= afterCompact.LastCommitSegment {
		t.Errorf("the backup after compaction is not seen exactly: %+v (compaction's commit %d)", next, afterCompact.LastCommitSegment)
	}
}

func TestActivityWhileLocked(t *testing.T) {
	b := newLocalBorg(t)
	b.backup("h-1", "one")
	want := b.activity()
	cmd := exec.Command("borg", "with-lock", b.repo, "sh", "-c", "test -e lock.exclusive && echo locked; sleep 2")
	cmd.Env = b.env
	cmd.Dir = b.repo
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf[:6]) != "locked" {
		t.Fatalf("borg with-lock did not report its lock: %q %v", buf, err)
	}
	a := b.activity()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !a.Locked || !a.LastArchive.Equal(want.LastArchive) {
		t.Errorf("while locked: %+v, want locked with the archive at %v", a, want.LastArchive)
	}
}

func TestActivityRefusesOtherDirectories(t *testing.T) {
	if _, err := ReadActivity(t.TempDir()); err == nil {
		t.Error("an empty directory read as a repository")
	}
}
