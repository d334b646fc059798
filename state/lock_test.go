package state

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestLockSecondRunWithoutWaitFailsAtOnceNamingTheHolder(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(context.Background(), dir, JobBackup, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	// A run that waits says so first (the callback); --lock-wait 0 never does.
	waited := false
	_, err = AcquireNotify(context.Background(), dir, JobCheck, 0, func(Holder) { waited = true })
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("want a *LockedError, got %v", err)
	}
	if waited || le.Waited != 0 {
		t.Errorf("--lock-wait 0 must not wait (waiting callback ran: %v, waited %s)", waited, le.Waited)
	}
	if le.Holder == nil || le.Holder.PID != os.Getpid() || le.Holder.Job != JobBackup || le.Holder.Started.IsZero() {
		t.Fatalf("holder: %+v", le.Holder)
	}
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "backup", "started ", "did not wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestLockSecondRunWaitsThenFails(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(context.Background(), dir, JobBackup, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	var told atomic.Int32
	start := time.Now()
	_, err = AcquireNotify(context.Background(), dir, JobVerify, 600*time.Millisecond, func(h Holder) {
		if h.PID == os.Getpid() {
			told.Add(1)
		}
	})
	took := time.Since(start)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "waited 600ms") {
		t.Fatalf("want a lock error after waiting, got %v", err)
	}
	if took < 600*time.Millisecond {
		t.Errorf("gave up after %s, before the 600ms it was given", took)
	}
	if told.Load() != 1 {
		t.Errorf("the waiting callback ran %d times, want once", told.Load())
	}
}

func TestLockWaiterGetsTheLockWhenTheHolderReleases(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(context.Background(), dir, JobBackup, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The holder lets go once the second run has said it waits: the second must then get the lock.
	second, err := AcquireNotify(context.Background(), dir, JobCheck, time.Minute, func(Holder) { first.Release() })
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	defer second.Release()
	if second.Stale != nil {
		t.Errorf("a released lock is not stale: %+v", second.Stale)
	}
	h, err := ReadHolder(dir)
	if err != nil || h == nil || h.Job != JobCheck {
		t.Fatalf("ReadHolder: %+v, %v", h, err)
	}
}

func TestLockCancelStopsTheWait(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(context.Background(), dir, JobBackup, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Acquire(ctx, dir, JobCheck, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("want the context's error soon, got %v after %s", err, time.Since(start))
	}
}

func TestLockReleaseLeavesAnEmptyFile(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(context.Background(), dir, JobBackup, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, LockFileName))
	var h Holder
	if json.Unmarshal(b, &h) != nil || h.PID != os.Getpid() || h.Job != JobBackup {
		t.Fatalf("lock record while held: %q", b)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("a second Release: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, LockFileName)); err != nil || len(b) != 0 {
		t.Fatalf("after release the file must stay, empty: %q %v", b, err)
	}
	if h, err := ReadHolder(dir); h != nil || err != nil {
		t.Fatalf("nobody holds a released lock: %+v %v", h, err)
	}
}

// A record naming a process that no longer exists, in a lock nobody holds, is taken over.
func TestLockStaleRecordOfADeadProcessIsTakenOver(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid
	started := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second)
	rec, _ := json.Marshal(Holder{PID: pid, Job: JobBackup, Started: started})
	os.WriteFile(filepath.Join(dir, LockFileName), rec, 0o600)

	l, err := Acquire(context.Background(), dir, JobBackup, 0)
	if err != nil {
		t.Fatalf("a stale lock must be taken over at once: %v", err)
	}
	defer l.Release()
	if l.Stale == nil || l.Stale.PID != pid || !l.Stale.Started.Equal(started) {
		t.Fatalf("the stale holder must be reported: %+v", l.Stale)
	}
	if l.Holder.PID != os.Getpid() {
		t.Fatalf("holder: %+v", l.Holder)
	}
}

// Two processes: the second is refused while the first holds the lock; once the first is killed
// (SIGKILL, no chance to clean up) the lock is free and its record is reported stale.
func TestLockAcrossProcessesAndAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "STATE_LOCK_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("helper: %q %v", line, err)
	}

	_, err = Acquire(context.Background(), dir, JobCheck, 300*time.Millisecond)
	var le *LockedError
	if !errors.As(err, &le) || le.Holder == nil || le.Holder.PID != cmd.Process.Pid || le.Holder.Job != JobBackup {
		t.Fatalf("want the helper (pid %d) named as holder, got %v", cmd.Process.Pid, err)
	}

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	l, err := Acquire(context.Background(), dir, JobCheck, 0)
	if err != nil {
		t.Fatalf("the lock of a killed run must be free: %v", err)
	}
	defer l.Release()
	if l.Stale == nil || l.Stale.PID != cmd.Process.Pid {
		t.Fatalf("the killed holder's record must be reported as stale: %+v", l.Stale)
	}
}

// TestMain runs the test binary as the other process of TestLockAcrossProcessesAndAfterSIGKILL
// when STATE_LOCK_HELPER_DIR is set, and as the tests otherwise.
func TestMain(m *testing.M) {
	if dir := os.Getenv("STATE_LOCK_HELPER_DIR"); dir != "" {
		lockHelperProcess(dir)
	}
	os.Exit(m.Run())
}

// lockHelperProcess takes the lock, says so, and holds it until it is killed.
func lockHelperProcess(dir string) {
	if _, err := Acquire(context.Background(), dir, JobBackup, 0); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// The error a run gets when another holds the lock says who holds it and how long it waited.
func TestLockedErrorSaysWhoHoldsTheLock(t *testing.T) {
	started := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tt := range []struct {
		e    LockedError
		want string
	}{
		{LockedError{Path: "/s/cht-backup.lock"}, "another cht-backup run holds the host lock /s/cht-backup.lock: a run that has not recorded itself yet; did not wait"},
		{LockedError{Path: "/s/cht-backup.lock", Holder: &Holder{PID: 42}, Waited: 2 * time.Second}, "another cht-backup run holds the host lock /s/cht-backup.lock: pid 42 (unknown job); waited 2s"},
		{LockedError{Path: "/s/cht-backup.lock", Holder: &Holder{PID: 42, Job: JobBackup, Started: started}},
			"another cht-backup run holds the host lock /s/cht-backup.lock: pid 42 (backup, started " + started.Local().Format(time.RFC3339) + "), running for "},
	} {
		if got := tt.e.Error(); !strings.HasPrefix(got, tt.want) || (tt.e.Holder == nil || tt.e.Holder.Started.IsZero()) && got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}
