package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
)

// A real backup is recorded in the state file and the metrics file, pings start and success,
// and `status` shows it; a failed one pings fail and `status` flags it.
func TestBackupRecordsStateMetricsPingsAndStatus(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	pings := newPingServer(t)
	hc := []string{"--healthcheck-url", pings.URL + "/ping/e2e"}

	r := w.run(w.backupArgs(h, append(hc, "--json")...)...)
	if r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	rep := decodeReport(t, r).Repositories[0]
	got, body := pings.take()
	if strings.Join(got, " ") != "/ping/e2e/start /ping/e2e" || !strings.Contains(body, "ok "+w.remoteRepo()+" archive "+rep.Archive) {
		t.Fatalf("pings: %v %q", got, body)
	}
	f, err := state.Load(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	e := f.Find(state.JobBackup, w.remoteRepo())
	if e == nil || e.LastSuccess == nil || e.LastSuccess.Archive != rep.Archive || e.LastSuccess.OriginalSize != rep.OriginalSize ||
		e.LastSuccess.Files != rep.Files || e.LastSuccess.Archives != 1 || e.LastRun.ExitCode != 0 {
		t.Fatalf("state: %+v", e)
	}
	metrics, err := os.ReadFile(filepath.Join(w.stateDir, "metrics", "cht_backup.prom"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`cht_backup_last_success_original_size_bytes{job="backup",repository="%s"} %d`, w.remoteRepo(), rep.OriginalSize),
		fmt.Sprintf(`cht_backup_last_success_files{job="backup",repository="%s"} %d`, w.remoteRepo(), rep.Files),
		fmt.Sprintf(`cht_backup_repository_archives{repository="%s"} 1`, w.remoteRepo()),
		fmt.Sprintf(`cht_backup_last_run_exit_code{job="backup",repository="%s"} 0`, w.remoteRepo()),
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	// A monitoring user that is not root (node_exporter's textfile collector) reads the metrics and
	// the state file by path: the state dir lets others pass through, not list.
	for _, d := range []string{filepath.Dir(w.dir), w.dir} {
		os.Chmod(d, 0o711) // t.TempDir's own dirs are 0700
	}
	for _, p := range []string{filepath.Join(w.stateDir, "metrics", "cht_backup.prom"), state.Path(w.stateDir)} {
		if out, err := exec.Command("runuser", "-u", "nobody", "--", "cat", p).CombinedOutput(); err != nil {
			t.Errorf("a non-root monitoring user cannot read %s: %v %s", p, err, out)
		}
	}
	if out, err := exec.Command("runuser", "-u", "nobody", "--", "ls", w.stateDir).CombinedOutput(); err == nil {
		t.Errorf("others may list the state dir: %s", out)
	}
	status := append([]string{"status", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_SHELL_KEY"])...)
	if s := w.run(status...); s.code != 0 || !strings.Contains(s.stdout, "archive "+rep.Archive) || !strings.Contains(s.stdout, "archives:         1") {
		t.Fatalf("status after a backup:\n%s", s)
	}

	// A wrong passphrase: exit 2, fail ping, and status says the last backup failed.
	os.WriteFile(w.passFile, []byte("wrong\n"), 0o600)
	if r := w.run(w.backupArgs(h, hc...)...); r.code != 2 {
		t.Fatalf("backup with a wrong passphrase:\n%s", r)
	}
	os.WriteFile(w.passFile, []byte(w.passphrase+"\n"), 0o600)
	if got, _ := pings.take(); strings.Join(got, " ") != "/ping/e2e/start /ping/e2e/fail" {
		t.Fatalf("pings after a failure: %v", got)
	}
	if s := w.run(status...); s.code != 1 || !strings.Contains(s.stdout, "ATTENTION: the last backup failed") || !strings.Contains(s.stdout, "archive "+rep.Archive) {
		t.Fatalf("status after a failed backup:\n%s", s)
	}
}

// Two backups on one host never overlap: with --lock-wait 0 the second fails at once naming the
// first, with a short wait it fails after it, with a long wait it runs once the first is done.
// The first run is paused (SIGSTOP) while it holds the lock, so it cannot finish before the
// others have tried, however fast the machine; it resumes once the long-waiting run says it waits.
func TestBackupTwoConcurrentRunsNeverOverlap(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	first := w.command(w.backupArgs(h)...)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	var firstErr error
	exited := make(chan struct{})
	go func() { firstErr = first.Wait(); close(exited) }()
	paused := false
	resume := func() {
		if paused {
			paused = false
			first.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(func() {
		resume()
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			first.Process.Kill()
			<-exited
		}
	})
	waitUntil(t, 30*time.Second, "the first backup to take the host lock", func() bool {
		hd, _ := state.ReadHolder(w.stateDir)
		return hd != nil && hd.PID == first.Process.Pid
	})
	if err := first.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused = true
	waitUntil(t, 10*time.Second, "the first backup to stop", func() bool { return procState(first.Process.Pid) == "T" })

	start := time.Now()
	r := w.run(w.backupArgs(h, "--lock-wait", "0")...)
	if r.code != exitLocked || time.Since(start) > 5*time.Second ||
		!strings.Contains(r.stderr, fmt.Sprintf("pid %d (backup, started ", first.Process.Pid)) || !strings.Contains(r.stderr, "what to do: let that run finish") {
		t.Fatalf("--lock-wait 0 while a backup runs:\n%s", r)
	}
	start = time.Now()
	r = w.run(w.backupArgs(h, "--lock-wait", "1s")...)
	if r.code != exitLocked || time.Since(start) < time.Second || !strings.Contains(r.stderr, "waited 1s") {
		t.Fatalf("--lock-wait 1s while a backup runs:\n%s", r)
	}

	third := w.command(w.backupArgs(h, "--lock-wait", "5m")...)
	var thirdOut bytes.Buffer
	thirdErr := &lineWatch{}
	third.Stdout, third.Stderr = &thirdOut, thirdErr
	stop, leak := make(chan struct{}), make(chan string, 1)
	go watchProcs(w.passphrase, pidsNow(), stop, leak)
	if err := third.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if third.ProcessState == nil {
			third.Process.Kill()
			third.Wait()
		}
	})
	thirdErr.waitFor(t, "waiting up to 5m0s", 60*time.Second)
	resume()
	<-exited
	if firstErr != nil {
		t.Fatalf("first backup: %v", firstErr)
	}
	third.Wait()
	close(stop)
	if where := <-leak; where != "" {
		t.Errorf("passphrase visible in %s while the waiting backup ran", where)
	}
	if code := third.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("--lock-wait 5m must wait, then back up: exit %d\n%s%s", code, thirdOut.String(), thirdErr)
	}
	if names := archiveNames(t, w, w.remoteRepo()); len(names) != 2 {
		t.Fatalf("want the two archives of the runs that got the lock, got %v", names)
	}
}

// procState is the state letter of a process in /proc/PID/stat (R, S, T, Z...), "" if unknown.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name in parentheses may hold blanks: the state follows its closing one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+3 > len(b) {
		return ""
	}
	return string(b[i+2])
}

// The lock and staging of a run that was killed are taken over by the next run, which says so.
func TestBackupTakesOverAStaleLock(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	os.MkdirAll(filepath.Join(w.stateDir, "staging", "20250101T023000Z-deadbeef", "cht-backup"), 0o700)
	rec, _ := json.Marshal(state.Holder{PID: 999999999, Job: "backup", Started: time.Now().Add(-20 * time.Hour)})
	os.WriteFile(filepath.Join(w.stateDir, state.LockFileName), rec, 0o600)
	r := w.run(w.backupArgs(h)...)
	if r.code != 0 || !strings.Contains(r.stderr, "took over this host's lock from pid 999999999 (backup") ||
		!strings.Contains(r.stderr, "removed staging left by an earlier run that was killed") {
		t.Fatalf("backup after a killed run:\n%s", r)
	}
	if hd, _ := state.ReadHolder(w.stateDir); hd != nil {
		t.Fatalf("lock still held after the run: %+v", hd)
	}
}
