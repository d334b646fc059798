//go:build !mutation

package borg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the real borg (and borg serve). The mutation run (scripts/mutation.sh builds with
// -tags mutation) leaves them out: one borg start per mutant would take hours on two cores. The test
// command builds without the tag and runs them.

// `borg --version` is a child too: it must not inherit BORG_PASSPHRASE from our environment. A
// wrapper records the environment the real borg is started with.
func TestDetectVersionWithoutPassphraseInEnvironment(t *testing.T) {
	real, err := exec.LookPath("borg")
	if err != nil {
		t.Skip("SKIPPED: borg is not installed; run scripts/test-env.sh as root to install it")
	}
	dir := t.TempDir()
	envOut := filepath.Join(dir, "env")
	wrapper := filepath.Join(dir, "borg")
	script := fmt.Sprintf("#!/bin/sh\nenv > %s\nexec %s \"$@\"\n", envOut, real)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BORG_PASSPHRASE", testPass)
	r := NewRunner(Credentials{Passphrase: NewSecret(testPass)}, nil)
	r.Binary = wrapper
	if _, err := r.DetectVersion(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(envOut)
	if err != nil || len(got) == 0 {
		t.Fatalf("the wrapper did not run: %v", err)
	}
	if strings.Contains(string(got), testPass) {
		t.Fatal("borg --version got the passphrase in its environment")
	}
}

// A passphrase larger than a pipe's buffer (64 KiB) reaches borg and hangs nothing.
func TestRunHugePassphrase(t *testing.T) {
	huge := strings.Repeat("0123456789abcdef", 80<<10/16) // 80 KiB
	r := newTestRunner(t, huge)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	repo := mustRepo(t, filepath.Join(t.TempDir(), "repo"))
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, Call{Args: InitArgs(repo)})
		if err == nil {
			_, err = r.Run(ctx, Call{Args: ListArgs(repo)})
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("init and list with an 80 KiB passphrase: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("borg with an 80 KiB passphrase hung")
	}
	// The wrong huge passphrase is refused as such, not hung.
	r.Credentials.Passphrase = NewSecret(strings.Repeat("x", 80<<10))
	if _, err := r.Run(ctx, Call{Args: ListArgs(repo)}); !errors.Is(err, ErrPassphraseWrong) {
		t.Fatalf("a wrong 80 KiB passphrase: %v", err)
	}
}

// When the process running borg dies (SIGKILL, OOM), borg gets SIGTERM and lets go of the
// repository: it never runs on as an orphan holding the lock.
func TestRunBorgDiesWithItsParent(t *testing.T) {
	if os.Getenv("BORG_RUNNER_HELPER_REPO") != "" {
		helperHoldLock()
		return
	}
	r := newTestRunner(t, testPass)
	repo := initRepo(t, r)
	pidFile := filepath.Join(t.TempDir(), "borg.pid")
	helper := exec.Command(os.Args[0], "-test.run=^TestRunBorgDiesWithItsParent$")
	helper.Env = append(os.Environ(), "BORG_RUNNER_HELPER_REPO="+repo.Raw, "BORG_RUNNER_HELPER_PIDFILE="+pidFile, "BORG_PASSPHRASE="+testPass)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()
	var borgPid int
	waitFor(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &borgPid)
		return err == nil && borgPid > 0
	})
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(repo.Path, "lock.exclusive")); return err == nil })
	_ = helper.Process.Kill()
	_ = helper.Wait()
	waitFor(t, func() bool { return syscall.Kill(borgPid, 0) != nil })
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(repo.Path, "lock.exclusive")); return os.IsNotExist(err) })
}

// helperHoldLock runs `borg with-lock REPO sleep 60` through the Runner and writes borg's pid.
func helperHoldLock() {
	r := NewRunner(Credentials{Passphrase: NewSecret(os.Getenv("BORG_PASSPHRASE"))}, nil)
	repo, err := ParseRepository(os.Getenv("BORG_RUNNER_HELPER_REPO"))
	if err != nil {
		os.Exit(3)
	}
	go func() {
		// The Runner's child is the only borg of this helper: find it and say its pid.
		for i := 0; i < 400; i++ {
			out, _ := exec.Command("pgrep", "-P", fmt.Sprint(os.Getpid())).Output()
			if f := strings.Fields(string(out)); len(f) > 0 {
				_ = os.WriteFile(os.Getenv("BORG_RUNNER_HELPER_PIDFILE"), []byte(f[0]), 0o600)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_, _ = r.Run(context.Background(), Call{Args: []string{"with-lock", "--log-json", repo.Raw, "sleep", "60"}})
	os.Exit(0)
}

// TestServeVersionLocalBorg talks to a real `borg serve` over pipes, as the
// SSH pre-flight does over a session's stdin and stdout.
func TestServeVersionLocalBorg(t *testing.T) {
	out, err := exec.Command("borg", "--version").Output()
	if err != nil {
		t.Fatalf("borg --version: %v (borg must be installed for this test)", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		t.Fatalf("unexpected borg --version output %q", out)
	}
	want := fields[1]

	cmd := exec.Command("borg", "serve")
	cmd.Env = append(cmd.Environ(), "BORG_BASE_DIR="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		// borg serve exits on EOF; drain so it cannot block on a full pipe.
		io.Copy(io.Discard, stdout)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("borg serve did not exit after stdin was closed")
		}
	}()

	type result struct {
		v   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := ServeVersion(stdout, stdin)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("ServeVersion: %v (stderr: %s)", r.err, stderr.String())
		}
		if r.v != want {
			t.Errorf("ServeVersion = %q, borg --version says %q", r.v, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer from borg serve within 30s")
	}
}

// With the real borg: a cached entry for its own key is believed, so no run pays `borg --version`
// twice; a cached version this tool does not support is refused like a detected one.
func TestVersionCacheRealBorg(t *testing.T) {
	if _, err := exec.LookPath("borg"); err != nil {
		t.Skip("borg is not installed: run scripts/test-env.sh")
	}
	key, err := BinaryKeyOf("borg")
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "borg-version.json")
	for _, c := range []struct {
		cached  string
		wantErr bool
	}{{"1.4.9", false}, {"2.0.0", true}} {
		v, _ := ParseVersion(c.cached)
		if err := storeVersion(cache, key, v); err != nil {
			t.Fatal(err)
		}
		r := NewRunner(Credentials{}, nil)
		got, err := r.DetectVersionCached(context.Background(), cache)
		if got != v || (err != nil) != c.wantErr {
			t.Fatalf("cached %s: got %v, %v", c.cached, got, err)
		}
	}
}

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
