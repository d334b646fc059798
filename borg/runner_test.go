//go:build !mutation

package borg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the real borg against local repositories.

const testPass = "correct horse battery staple 7f3a"

func newTestRunner(t *testing.T, pass string) *Runner {
	t.Helper()
	if _, err := exec.LookPath("borg"); err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("borg is not installed; scripts/test-env.sh installs it (scripts/test.sh runs it first)")
		}
		t.Skip("SKIPPED: borg is not installed; run scripts/test-env.sh as root to install it")
	}
	r := NewRunner(Credentials{Passphrase: NewSecret(pass)}, nil)
	if _, err := r.DetectVersion(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Keep borg's cache and security dirs inside the test.
	t.Setenv("BORG_BASE_DIR", t.TempDir())
	return r
}

func initRepo(t *testing.T, r *Runner) Repository {
	t.Helper()
	repo := mustRepo(t, filepath.Join(t.TempDir(), "repo"))
	if _, err := r.Run(context.Background(), Call{Args: InitArgs(repo)}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return repo
}

func TestRunInitAndPassphrase(t *testing.T) {
	r := newTestRunner(t, testPass)
	repo := initRepo(t, r)

	cfg, err := os.ReadFile(filepath.Join(repo.Path, "config"))
	if err != nil || !bytes.Contains(cfg, []byte("append_only = 1")) {
		t.Fatalf("repository not append-only: %s %v", cfg, err)
	}
	res, err := r.Run(context.Background(), Call{Args: InfoArgs(repo, "")})
	if err != nil {
		t.Fatalf("info with the right passphrase: %v", err)
	}
	var info RepositoryInfo
	if err := json.Unmarshal(res.Stdout, &info); err != nil || info.Encryption.Mode != Encryption {
		t.Fatalf("encryption mode %q (%v)", info.Encryption.Mode, err)
	}

	wrong := newTestRunner(t, "not the passphrase")
	t.Setenv("BORG_BASE_DIR", t.TempDir())
	_, err = wrong.Run(context.Background(), Call{Args: ListArgs(repo)})
	if !errors.Is(err, ErrPassphraseWrong) {
		t.Fatalf("wrong passphrase: got %v", err)
	}
	if strings.Contains(err.Error(), "not the passphrase") {
		t.Fatal("the passphrase leaked into the error")
	}

	_, err = r.Run(context.Background(), Call{Args: InitArgs(repo)})
	if !errors.Is(err, ErrRepoExists) {
		t.Fatalf("second init: got %v", err)
	}
}

func TestRunRepositoryMissing(t *testing.T) {
	r := newTestRunner(t, testPass)
	_, err := r.Run(context.Background(), Call{Args: ListArgs(mustRepo(t, filepath.Join(t.TempDir(), "nothing")))})
	if !errors.Is(err, ErrRepoNotFound) {
		t.Fatalf("got %v", err)
	}
	var be *Error
	if !errors.As(err, &be) || be.MsgID != "Repository.DoesNotExist" || be.Hint() == "" {
		t.Fatalf("error lacks msgid or hint: %#v", err)
	}
}

// TestRunLockTimeoutAndNoSecretInProcessTable holds the repository lock with a second borg, and
// while our run waits for it, reads every process's argv and environment.
func TestRunLockTimeoutAndNoSecretInProcessTable(t *testing.T) {
	r := newTestRunner(t, testPass)
	repo := initRepo(t, r)
	holder := exec.Command("borg", "with-lock", repo.Raw, "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(repo.Path, "lock.exclusive")); return err == nil })

	r.LockWait = 3
	leaks := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				close(leaks)
				return
			default:
			}
			if where := scanProcsFor(testPass); where != "" {
				leaks <- where
				close(leaks)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_, err := r.Run(context.Background(), Call{Args: ListArgs(repo)})
	close(stop)
	if where, ok := <-leaks; ok && where != "" {
		t.Fatalf("passphrase visible in %s", where)
	}
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("got %v", err)
	}
}

// scanProcsFor reports the first /proc/PID/{cmdline,environ} that holds s.
func scanProcsFor(s string) string {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if err == nil && bytes.Contains(b, []byte(s)) {
				return filepath.Join(d, f)
			}
		}
	}
	return ""
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunCancelStopsBorgCleanly(t *testing.T) {
	r := newTestRunner(t, testPass)
	repo := initRepo(t, r)
	src := t.TempDir()
	buf := make([]byte, 1<<20)
	for i := 0; i < 200; i++ {
		_, _ = rand.Read(buf)
		if err := os.WriteFile(filepath.Join(src, "f"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+time.Now().Format("150405.000000000")), buf, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var progressed bool
	_, err := r.Run(ctx, Call{Args: CreateArgs(repo, CreateOptions{Archive: "cancelled", Paths: []string{src}, Progress: true}),
		OnProgress: func(p Progress) {
			if p.Type == "archive_progress" && !progressed {
				progressed = true
				cancel()
			}
		}})
	if !progressed {
		t.Fatal("no archive_progress event arrived")
	}
	if !errors.Is(err, ErrCancelled) {
		t.Fatalf("got %v", err)
	}
	// borg released its lock and the repository is usable: no "cancelled" archive was completed.
	if _, err := os.Stat(filepath.Join(repo.Path, "lock.exclusive")); !os.IsNotExist(err) {
		t.Fatalf("lock left behind: %v", err)
	}
	res, err := r.Run(context.Background(), Call{Args: ListArgs(repo)})
	if err != nil {
		t.Fatalf("list after cancel: %v", err)
	}
	var l ArchiveListing
	_ = json.Unmarshal(res.Stdout, &l)
	for _, a := range l.Archives {
		if a.Name == "cancelled" {
			t.Fatalf("a cancelled run left a complete-looking archive: %v", l.Archives)
		}
	}
}

func TestRunCreateReportsWarningsWithPaths(t *testing.T) {
	r := newTestRunner(t, testPass)
	repo := initRepo(t, r)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "ok"), []byte("fine"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(src, "vanished")
	res, err := r.Run(context.Background(), Call{Args: CreateArgs(repo, CreateOptions{Archive: "w", Paths: []string{src, missing}})})
	if err != nil {
		t.Fatalf("a warning is not an error: %v", err)
	}
	if !res.Warned || res.ExitCode != 1 || len(res.Warnings) == 0 || res.Warnings[0].Path != missing {
		t.Fatalf("want a warning naming %s, got %+v", missing, res)
	}
}

// A repository on a read-only file system (how a path outside a systemd unit's ReadWritePaths=
// looks from inside the unit): borg cannot create its lock and says LockFailed, which must not
// read as another borg holding the lock.
func TestRunReadOnlyRepositoryIsNoLockTimeout(t *testing.T) {
	r := newTestRunner(t, testPass)
	repo := initRepo(t, r)
	if os.Geteuid() != 0 {
		t.Skip("a read-only bind mount needs root")
	}
	if err := syscall.Mount(repo.Path, repo.Path, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(repo.Path, 0) })
	if err := syscall.Mount("", repo.Path, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("read-only remount: %v", err)
	}
	r.LockWait = 2
	_, err := r.Run(context.Background(), Call{Args: ListArgs(repo)})
	if !errors.Is(err, ErrReadOnly) || errors.Is(err, ErrLockTimeout) {
		t.Fatalf("got %v (%#v)", err, err)
	}
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(be.Hint(), "schedule install` again") || strings.Contains(be.Hint(), "break-lock") {
		t.Fatalf("hint: %q", be.Hint())
	}
}
