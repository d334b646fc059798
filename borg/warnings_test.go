package borg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What borg 1.2 and 1.4 say about files they could not archive, and what it means for the archive.
func TestClassifyWarning(t *testing.T) {
	tests := []struct {
		name, msgid, msg string
		want             WarningKind
		path             string
	}{
		{"1.2 changed", "", "home/cht/couchdb/shards/0-1/medic.1.couch: file changed while we backed it up", WarningChanged, "home/cht/couchdb/shards/0-1/medic.1.couch"},
		{"1.4 changed", "FileChangedWarning", "/d/medic.1.couch: file changed while we backed it up", WarningChanged, "/d/medic.1.couch"},
		{"1.4 race", "BackupRaceConditionError", "/d/x: file type or inode changed while we backed it up (race condition, skipped file)", WarningChanged, ""},
		{"1.2 vanished", "", "/d/shards/0-1/old.1.couch.compact.data: stat: [Errno 2] No such file or directory: 'old.1.couch.compact.data'", WarningVanished, "/d/shards/0-1/old.1.couch.compact.data"},
		{"1.4 vanished", "BackupWarning", "/d/x.couch: open: [Errno 2] No such file or directory: 'x.couch'", WarningVanished, "/d/x.couch"},
		{"1.2 permission denied", "", "src/eacces: open: [Errno 13] Permission denied: 'eacces'", WarningReadError, "src/eacces"},
		{"1.2 I/O error", "", "src/eio: read: [Errno 5] Input/output error", WarningReadError, "src/eio"},
		{"1.4 permission denied", "BackupWarning", "/d/y: open: [Errno 13] Permission denied: 'y'", WarningReadError, "/d/y"},
		{"1.4 I/O error by msgid", "BackupIOError", "/d/z: read failed", WarningReadError, ""},
		{"broken pipe echo", "", "/d/shards/0-1/a.1.couch: read: [Errno 32] Broken pipe", WarningConnection, "/d/shards/0-1/a.1.couch"},
		{"connection reset echo", "", "/d/b: read: [Errno 104] Connection reset by peer", WarningConnection, "/d/b"},
		{"include pattern", "IncludePatternNeverMatchedWarning", "Include pattern 'x' never matched.", WarningOther, ""},
		{"general", "", "something general", WarningOther, ""},
	}
	for _, tt := range tests {
		w := parseWarning(LogMessage{Level: "WARNING", Message: tt.msg, MsgID: tt.msgid})
		if w.Kind != tt.want {
			t.Errorf("%s: kind %v, want %v", tt.name, w.Kind, tt.want)
		}
		if tt.path != "" && w.Path != tt.path {
			t.Errorf("%s: path %q, want %q", tt.name, w.Path, tt.path)
		}
	}
	for k, benign := range map[WarningKind]bool{WarningChanged: true, WarningVanished: true, WarningOther: true, WarningReadError: false, WarningConnection: false} {
		if k.Benign() != benign {
			t.Errorf("%v: benign %v", k, k.Benign())
		}
	}
}

func TestReadErrorsAndReported(t *testing.T) {
	res := &Result{ExitCode: 1, Warnings: []Warning{
		parseWarning(LogMessage{Message: "/d/a: file changed while we backed it up"}),
		parseWarning(LogMessage{Message: "/d/b: open: [Errno 13] Permission denied: 'b'"}),
		parseWarning(LogMessage{Message: "/d/c: read: [Errno 32] Broken pipe"}),
	}}
	if re := res.ReadErrors(false); len(re) != 1 || re[0].Path != "/d/b" {
		t.Errorf("read errors: %+v", re)
	}
	if rep := res.Reported(); len(rep) != 2 || rep[1].Path != "/d/b" {
		t.Errorf("reported: %+v", rep)
	}
	// borg 1.4 says so in its exit code even when no message named the file.
	if re := (&Result{ExitCode: 105}).ReadErrors(true); len(re) != 1 {
		t.Errorf("exit 105 with modern codes: %+v", re)
	}
	if re := (&Result{ExitCode: 100}).ReadErrors(true); len(re) != 0 {
		t.Errorf("exit 100 (file changed) is no read error: %+v", re)
	}
}

// A connection that dropped mid-create: borg 1.2 may end with "Local Exception" after echoing a
// Broken pipe per file; it is a connection failure, retried by the caller.
func TestClassifyDroppedConnection(t *testing.T) {
	for _, text := range []string{
		"/d/a: read: [Errno 32] Broken pipe",
		"BrokenPipeError: [Errno 32] Broken pipe",
		"borg.remote.ConnectionClosed: Connection closed by remote host",
	} {
		if got := classify("Exception", 2, false, text); !errors.Is(got, ErrConnectionClosed) {
			t.Errorf("%q: got %v", text, got)
		}
	}
}

func TestIsCheckpoint(t *testing.T) {
	for name, want := range map[string]bool{
		"host-2024-01-01T000000Z.checkpoint":    true,
		"host-2024-01-01T000000Z.checkpoint.1":  true,
		"host-2024-01-01T000000Z.checkpoint.12": true,
		"host-2024-01-01T000000Z":               false,
		"checkpoint-host":                       false,
		"host.checkpointed":                     false,
	} {
		if IsCheckpoint(name) != want {
			t.Errorf("IsCheckpoint(%q) = %v", name, !want)
		}
	}
}

func TestChildEnvHoldsNoSecret(t *testing.T) {
	env := fmtEnv(ChildEnv([]string{"PATH=/bin", "BORG_PASSPHRASE=hunter2", "BORG_PASSCOMMAND=cat /x", "CHT_BACKUP_REPO=/r", "HOME=/root"}))
	if contains(env, "hunter2") || contains(env, "BORG_PASSCOMMAND") || contains(env, "CHT_BACKUP_") || !contains(env, "PATH=/bin") {
		t.Errorf("child environment: %s", env)
	}
}

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
