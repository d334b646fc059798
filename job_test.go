package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/sirupsen/logrus"
)

// jobOptions are the settings runJob reads, for tests that call it directly; the log goes to
// the returned buffer.
func jobOptions(t *testing.T, stateDir string, repos ...string) (*options, *bytes.Buffer) {
	t.Helper()
	var logBuf bytes.Buffer // logrus serialises its writes
	log := logrus.New()
	log.SetOutput(&logBuf)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true})
	o := &options{StateDir: stateDir, Retries: 3, RetryWait: 10 * time.Millisecond,
		MetricsFile: filepath.Join(stateDir, "metrics", "cht_backup.prom"), Log: log}
	for _, raw := range repos {
		r, err := borg.ParseRepository(raw)
		if err != nil {
			t.Fatal(err)
		}
		o.Repos = append(o.Repos, r)
	}
	return o, &logBuf
}

// holdLock runs a job that holds the host lock until the returned function is called.
func holdLock(t *testing.T, o *options, job string) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	finished := make(chan error, 1)
	go func() {
		finished <- runJob(context.Background(), o, job, func(ctx context.Context) ([]state.Outcome, error) {
			close(held)
			<-done
			return nil, nil
		})
	}()
	<-held
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			if err := <-finished; err != nil {
				t.Errorf("the holding run: %v", err)
			}
		})
	}
}

// Two runs never overlap: with --lock-wait 0 the second fails at once, with a wait it waits
// that long; either way it names the holder and exits 75 without running its body.
func TestRunJobSecondRunFailsNamingTheHolder(t *testing.T) {
	dir := t.TempDir()
	first, _ := jobOptions(t, dir, "/r")
	release := holdLock(t, first, state.JobBackup)
	defer release()

	for _, wait := range []time.Duration{0, 700 * time.Millisecond} {
		second, _ := jobOptions(t, dir, "/r")
		second.LockWait = wait
		ran := false
		start := time.Now()
		err := runJob(context.Background(), second, state.JobCheck, func(ctx context.Context) ([]state.Outcome, error) {
			ran = true
			return nil, nil
		})
		took := time.Since(start)
		if ran {
			t.Fatal("the second run's work ran while the first held the lock")
		}
		if exitCode(err) != exitLocked {
			t.Fatalf("want exit %d, got %d (%v)", exitLocked, exitCode(err), err)
		}
		msg := err.Error()
		for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "(backup, started ", "cht-backup.lock"} {
			if !strings.Contains(msg, want) {
				t.Errorf("lock error %q lacks %q", msg, want)
			}
		}
		if !strings.Contains(hintOf(err), "--lock-wait") {
			t.Errorf("hint: %q", hintOf(err))
		}
		if took < wait || took > wait+2*time.Second {
			t.Errorf("--lock-wait %s: gave up after %s", wait, took)
		}
	}
	// Nothing was recorded for the refused runs.
	if f, _ := state.Load(dir); f.Find(state.JobCheck, "/r") != nil {
		t.Fatal("a run that never got the lock was recorded")
	}
	release()
	// Once the holder is done, the next run goes ahead.
	o, _ := jobOptions(t, dir, "/r")
	if err := runJob(context.Background(), o, state.JobCheck, func(ctx context.Context) ([]state.Outcome, error) { return nil, nil }); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// A waiting run starts as soon as the holder finishes, and says in the log why it waited. The
// holder finishes once the waiting run has said so.
func TestRunJobWaitsForTheHolder(t *testing.T) {
	dir := t.TempDir()
	first, _ := jobOptions(t, dir, "/r")
	release := holdLock(t, first, state.JobBackup)
	defer release()
	second, _ := jobOptions(t, dir, "/r")
	logs := &lineWatch{} // read while the waiting run writes
	second.Log.SetOutput(logs)
	second.LockWait = time.Minute
	var releasedAt, ranAt time.Time
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- runJob(context.Background(), second, state.JobVerify, func(ctx context.Context) ([]state.Outcome, error) {
			mu.Lock()
			ranAt = time.Now()
			mu.Unlock()
			return nil, nil
		})
	}()
	logs.waitFor(t, "another cht-backup run holds this host's lock: pid", 30*time.Second)
	mu.Lock()
	releasedAt = time.Now()
	mu.Unlock()
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ranAt.IsZero() || ranAt.Before(releasedAt) {
		t.Fatalf("the waiting run's work ran at %s, while the holder held the lock until %s", ranAt, releasedAt)
	}
	if ranAt.Sub(releasedAt) > 5*time.Second {
		t.Errorf("the waiting run's work ran at %s, the holder let go at %s: want it soon after", ranAt, releasedAt)
	}
}

// The lock of a run that was SIGKILLed is taken over, and the log says so.
func TestRunJobTakesOverAStaleLock(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(state.Holder{PID: dead.Process.Pid, Job: "backup", Started: time.Now().Add(-time.Hour)})
	os.WriteFile(filepath.Join(dir, state.LockFileName), rec, 0o600)
	o, logBuf := jobOptions(t, dir, "/r")
	if err := runJob(context.Background(), o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) { return nil, nil }); err != nil {
		t.Fatalf("a stale lock must not stop the run: %v", err)
	}
	if want := fmt.Sprintf("took over this host's lock from pid %d (backup", dead.Process.Pid); !strings.Contains(logBuf.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logBuf)
	}
}

// pingServer records the pings it receives, on 127.0.0.1.
type pingServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
	last  string
}

func newPingServer(t *testing.T) *pingServer {
	p := &pingServer{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.paths = append(p.paths, r.URL.Path)
		p.last = string(b)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pingServer) take() ([]string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	got, last := p.paths, p.last
	p.paths = nil
	return got, last
}

// Each run pings start and then success or fail; warnings count as success; the state file and
// the metrics file follow every run.
func TestRunJobRecordsStateMetricsAndPings(t *testing.T) {
	dir := t.TempDir()
	pings := newPingServer(t)
	o, _ := jobOptions(t, dir, "ssh://borg@backup.example/./cht", "/mnt/usb/cht")
	o.HealthcheckURL = pings.URL + "/ping/uuid-1"
	remote, usb := o.Repos[0].Raw, o.Repos[1].Raw

	// 1. Success on both, with sizes.
	err := runJob(context.Background(), o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) {
		var outs []state.Outcome
		for _, r := range o.Repos {
			outs = append(outs, backupOutcome(BackupSummary{Repository: r.Raw, Archive: "host-2025", OK: true,
				OriginalSize: 1000, CompressedSize: 600, DeduplicatedSize: 50, Files: 12}, time.Now().Add(-time.Minute), time.Now()))
		}
		return outs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, body := pings.take(); strings.Join(got, " ") != "/ping/uuid-1/start /ping/uuid-1" || !strings.Contains(body, "ok "+remote+" archive host-2025") {
		t.Fatalf("pings after success: %v %q", got, body)
	}
	metrics, _ := os.ReadFile(o.MetricsFile)
	for _, want := range []string{
		`cht_backup_last_run_exit_code{job="backup",repository="` + remote + `"} 0`,
		`cht_backup_last_success_original_size_bytes{job="backup",repository="` + usb + `"} 1000`,
		`cht_backup_last_success_files{job="backup",repository="` + usb + `"} 12`,
		"# TYPE cht_backup_last_success_timestamp_seconds gauge",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}

	// 2. A file changed on one repository: warnings, exit 1, still a success ping.
	err = runJob(context.Background(), o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) {
		return []state.Outcome{
			backupOutcome(BackupSummary{Repository: remote, Archive: "host-2026", OK: true, Warnings: []BackupWarning{{Path: "srv/couchdb/shards/x.couch", Message: "file changed while we backed it up"}}}, time.Time{}, time.Time{}),
			backupOutcome(BackupSummary{Repository: usb, Archive: "host-2026", OK: true}, time.Time{}, time.Time{}),
		}, warnings{n: 1}
	})
	if exitCode(err) != exitWarning {
		t.Fatalf("runJob must return the body's error unchanged: %v", err)
	}
	if got, _ := pings.take(); strings.Join(got, " ") != "/ping/uuid-1/start /ping/uuid-1" {
		t.Fatalf("pings after warnings: %v", got)
	}

	// 3. The body fails before it has outcomes: every repository gets the failure; fail ping.
	err = runJob(context.Background(), o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) {
		return nil, &userError{err: errors.New("cannot read /home/ubuntu/cht/upgrade-service/.env"), hint: "check --cht-dir"}
	})
	if exitCode(err) != exitFailed {
		t.Fatalf("exit code %d", exitCode(err))
	}
	if got, body := pings.take(); strings.Join(got, " ") != "/ping/uuid-1/start /ping/uuid-1/fail" || !strings.Contains(body, ".env") {
		t.Fatalf("pings after failure: %v %q", got, body)
	}

	f, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := f.Find(state.JobBackup, remote)
	if e.LastRun.Status != state.StatusFailed || e.LastRun.ExitCode != 2 || e.LastRun.Hint != "check --cht-dir" ||
		e.LastSuccess == nil || e.LastSuccess.Archive != "host-2026" || e.LastSuccess.Status != state.StatusWarning ||
		len(e.LastSuccess.Warnings) != 1 || !strings.HasPrefix(e.LastSuccess.Warnings[0], "srv/couchdb/shards/x.couch: ") {
		t.Fatalf("state of %s: %+v / %+v", remote, e.LastRun, e.LastSuccess)
	}
	metrics, _ = os.ReadFile(o.MetricsFile)
	for _, want := range []string{
		`cht_backup_last_run_exit_code{job="backup",repository="` + remote + `"} 2`,
		`cht_backup_last_run_success{job="backup",repository="` + usb + `"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
}

// A health-check server that is down never fails the job.
func TestRunJobSurvivesAHealthCheckServerThatIsDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	o, logBuf := jobOptions(t, t.TempDir(), "/r")
	o.HealthcheckURL = url + "/x"
	defer func(orig func(*options) *state.Pinger) { newPinger = orig }(newPinger)
	newPinger = func(o *options) *state.Pinger {
		return &state.Pinger{URL: o.HealthcheckURL, Log: o.Log, Backoff: 10 * time.Millisecond}
	}
	start := time.Now()
	if err := runJob(context.Background(), o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) { return nil, nil }); err != nil {
		t.Fatalf("a failed ping must not fail the job: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("pings to a closed port took %s", time.Since(start))
	}
	if !strings.Contains(logBuf.String(), "health-check start ping to 127.0.0.1") {
		t.Errorf("the failed ping must be logged:\n%s", logBuf)
	}
}

// status, run as the binary, after a success, a failure and a warning, and as a --max-age probe.
func TestStatusAfterSuccessFailureAndWarning(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "empty.env")
	os.WriteFile(cfg, nil, 0o600)
	usb := filepath.Join(dir, "usb")
	os.MkdirAll(usb, 0o700)
	remote := "ssh://borg@backup.example/./cht"
	o, _ := jobOptions(t, dir, remote, usb)
	status := func(extra ...string) result {
		t.Helper()
		args := append([]string{"status", "--config", cfg, "--state-dir", dir, "--cht-dir", dir, "--repo", remote, "--repo", usb}, extra...)
		cmd := exec.Command(binPath, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{out.String(), errb.String(), code}
	}
	record := func(job string, outs ...state.Outcome) {
		t.Helper()
		if err := runJob(context.Background(), o, job, func(ctx context.Context) ([]state.Outcome, error) { return outs, nil }); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing recorded yet: the probe fails.
	if r := status(); r.code != 2 || !strings.Contains(r.stdout, "last backup ok:   never") || !strings.Contains(r.stderr, "no successful backup younger than 26h0m0s") {
		t.Fatalf("status before any backup:\n%s", r)
	}

	// Both backed up: exit 0, the archive and its age shown.
	record(state.JobBackup,
		backupOutcome(BackupSummary{Repository: remote, Archive: "host-A", OK: true, Files: 5, OriginalSize: 2048}, time.Now().Add(-time.Minute), time.Now()),
		backupOutcome(BackupSummary{Repository: usb, Archive: "host-A", OK: true}, time.Time{}, time.Time{}))
	record(state.JobCheck, state.Outcome{Repository: remote, Archives: 7})
	r := status()
	if r.code != 0 || !strings.Contains(r.stdout, "archive host-A, 5 files, 2.0 KiB") || !strings.Contains(r.stdout, "archives:         7") ||
		!strings.Contains(r.stdout, "last check:       ok ") || !strings.Contains(r.stdout, "last verify:      never") {
		t.Fatalf("status after success:\n%s", r)
	}
	// The 3-2-1 picture: one copy off this host, one on this machine's disk.
	if !strings.Contains(r.stdout, "3-2-1: 2 copies besides the live data, 1 off this host, 1 on another medium") ||
		!strings.Contains(r.stdout, "1 repository is on the same filesystem as the CHT data: it guards against mistakes") {
		t.Fatalf("3-2-1 picture:\n%s", r)
	}
	if !strings.Contains(r.stdout, "where:            a local path on the same filesystem as the CHT data") {
		t.Fatalf("the USB path sits on the CHT data's filesystem here:\n%s", r)
	}

	// A later failure on the remote: backups are still recent, so exit 1 and the error shown.
	record(state.JobBackup, state.Outcome{Repository: remote, Error: "borg create: connection closed", Hint: "check the network"},
		backupOutcome(BackupSummary{Repository: usb, Archive: "host-B", OK: true, Warnings: []BackupWarning{{Message: "x: file changed while we backed it up"}}}, time.Time{}, time.Time{}))
	r = status()
	if r.code != 1 || !strings.Contains(r.stdout, "ATTENTION: the last backup failed") || !strings.Contains(r.stdout, "connection closed") ||
		!strings.Contains(r.stdout, "warnings:         1 in the last backup") || !strings.Contains(r.stdout, "x: file changed") {
		t.Fatalf("status after a failure and a warning:\n%s", r)
	}

	// As a probe with a short --max-age: the last success is too old, exit 2, one line why.
	time.Sleep(1100 * time.Millisecond)
	r = status("--max-age", "1s")
	if r.code != 2 || !strings.Contains(r.stdout, "PROBLEM: the last successful backup is") || !strings.Contains(r.stderr, "cht-backup: error: 2 of 2 repositories have no successful backup younger than 1s") {
		t.Fatalf("status --max-age 1s:\n%s", r)
	}

	// --json says the same.
	r = status("--json")
	var rep StatusReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r)
	}
	if r.code != 1 || rep.ExitCode != 1 || len(rep.Repositories) != 2 || rep.Copies.OffHost != 1 ||
		rep.Repositories[0].LastSuccessfulBackup == nil || rep.Repositories[0].LastSuccessfulBackup.Archive != "host-A" ||
		rep.Repositories[0].LastBackup.Status != state.StatusFailed || rep.Repositories[0].Archives == nil || *rep.Repositories[0].Archives != 7 ||
		rep.Repositories[1].LastSuccessfulBackup.Archive != "host-B" || len(rep.Repositories[1].Warnings) != 1 {
		t.Fatalf("status --json:\n%s", r)
	}

	// Without --repo (a monitoring user without the config), the state file names the repositories.
	cmd := exec.Command(binPath, "status", "--config", cfg, "--state-dir", dir)
	out, _ := cmd.Output()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "repository "+remote) || !strings.Contains(string(out), "repository "+usb) {
		t.Fatalf("status from the state file alone: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

func TestAdvice321(t *testing.T) {
	tests := []struct {
		c    Copies
		want []string
	}{
		{Copies{}, []string{"no backup repository"}},
		{Copies{Repositories: 1, OffHost: 1, OtherMedium: 1}, []string{"one backup copy"}},
		{Copies{Repositories: 1}, []string{"No copy is off this host", "one backup copy", "same disk"}},
		{Copies{Repositories: 2, OtherMedium: 1}, []string{"No copy is off this host"}},
		{Copies{Repositories: 2, OffHost: 1, OtherMedium: 2}, []string{"3-2-1 is met"}},
		{Copies{Repositories: 2, OffHost: 1, OtherMedium: 1, SameDisk: 1}, []string{"1 repository is on the same filesystem", "3-2-1 is met"}},
	}
	for _, tt := range tests {
		got := strings.Join(advice321(tt.c), " | ")
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v: advice %q lacks %q", tt.c, got, w)
			}
		}
		if len(advice321(tt.c)) != len(tt.want) {
			t.Errorf("%+v: %d pieces of advice, want %d: %q", tt.c, len(advice321(tt.c)), len(tt.want), got)
		}
	}
}

func TestLocate(t *testing.T) {
	for _, tt := range []struct {
		repo            string
		offHost, medium bool
	}{
		{"ssh://borg@backup.example/./cht", true, true},
		{"borg@127.0.0.1:cht", false, false},
		{"ssh://borg@localhost:2222/./cht", false, false},
		{"ssh://borg@[::1]:2222/./cht", false, false},
		{t.TempDir(), false, false}, // same filesystem as the "CHT dir" below
	} {
		r, err := borg.ParseRepository(tt.repo)
		if err != nil {
			t.Fatal(err)
		}
		where, off, medium, _ := locate(r, os.TempDir())
		if off != tt.offHost || medium != tt.medium {
			t.Errorf("%s: %q off-host %v medium %v", tt.repo, where, off, medium)
		}
	}
	// /proc is another filesystem than /tmp: it stands for a mounted USB disk.
	r, _ := borg.ParseRepository("/proc/self")
	if where, _, medium, _ := locate(r, os.TempDir()); !medium || !strings.Contains(where, "another filesystem") {
		t.Errorf("/proc: %q %v", where, medium)
	}
	r, _ = borg.ParseRepository("/mnt/not-mounted-here/cht")
	if where, _, _, _ := locate(r, os.TempDir()); !strings.Contains(where, "mounted") {
		t.Errorf("missing path: %q", where)
	}
}

// An interrupted job is recorded with exit 130 in state.json and the metrics, not as a plain
// failure (2): monitoring tells "stopped" from "broken".
func TestRunJobRecordsAnInterruptedRunAs130(t *testing.T) {
	dir := t.TempDir()
	o, _ := jobOptions(t, dir, "/mnt/usb/cht")
	repo := o.Repos[0].Raw
	err := runJob(context.Background(), o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) {
		return []state.Outcome{{Repository: repo, Error: "not started: the run was interrupted"}},
			&userError{err: errors.New("backup interrupted"), hint: "run it again", code: exitInterrupted}
	})
	if exitCode(err) != exitInterrupted {
		t.Fatalf("runJob must return the body's error unchanged: %v", err)
	}
	f, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e := f.Find(state.JobBackup, repo); e.LastRun.Status != state.StatusFailed || e.LastRun.ExitCode != exitInterrupted {
		t.Fatalf("an interrupted run must be recorded as failed with exit 130: %+v", e.LastRun)
	}
	metrics, _ := os.ReadFile(o.MetricsFile)
	if want := `cht_backup_last_run_exit_code{job="backup",repository="` + repo + `"} 130`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %q:\n%s", want, metrics)
	}
	// The same when the body had no outcome yet (interrupted before any repository was tried).
	err = runJob(context.Background(), o, state.JobCheck, func(ctx context.Context) ([]state.Outcome, error) {
		return nil, context.Canceled
	})
	if exitCode(err) != exitInterrupted {
		t.Fatalf("a cancelled body: exit %d", exitCode(err))
	}
	f, _ = state.Load(dir)
	if e := f.Find(state.JobCheck, repo); e.LastRun.ExitCode != exitInterrupted {
		t.Fatalf("a check cancelled before it had outcomes must be recorded with exit 130: %+v", e.LastRun)
	}
}

// status is a probe for every job: a failed check or verify makes it exit 1 even when the
// backups are fine, and says which job failed.
func TestStatusExits1AfterAFailedCheckOrVerify(t *testing.T) {
	for _, job := range []string{state.JobCheck, state.JobVerify} {
		t.Run(job, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "empty.env")
			os.WriteFile(cfg, nil, 0o600)
			repo := filepath.Join(dir, "usb")
			o, _ := jobOptions(t, dir, repo)
			record := func(job string, outs ...state.Outcome) {
				t.Helper()
				runJob(context.Background(), o, job, func(ctx context.Context) ([]state.Outcome, error) { return outs, nil })
			}
			status := func() result {
				t.Helper()
				cmd := exec.Command(binPath, "status", "--config", cfg, "--state-dir", dir, "--repo", repo)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				cmd.Run()
				return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
			}
			record(state.JobBackup, backupOutcome(BackupSummary{Repository: repo, Archive: "host-A", OK: true}, time.Time{}, time.Time{}))
			record(job, state.Outcome{Repository: repo})
			if r := status(); r.code != 0 {
				t.Fatalf("a good backup and a good %s: want exit 0\n%s", job, r)
			}
			record(job, state.Outcome{Repository: repo, Error: "borg check found damage in segment 3"})
			r := status()
			if r.code != 1 || !strings.Contains(r.stdout, "segment 3") {
				t.Fatalf("after a failed %s status must exit 1 and show the error\n%s", job, r)
			}
		})
	}
}
