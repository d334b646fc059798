package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/state"
)

// A local repository added to the config after `schedule install` is outside the installed
// unit's ReadWritePaths: a manual run warns, a run started by systemd fails before borg, with
// the fix, and the failure is recorded.
func TestRunNamesUnitsThatNoLongerCoverItsPaths(t *testing.T) {
	// Not under /tmp: the units refuse a state dir there (PrivateTmp).
	base := nonTmpDir(t)
	stateDir := filepath.Join(base, "state")
	o, logBuf := jobOptions(t, stateDir, "/srv/cht-repo")
	_, so := scheduleFixture(t)
	so.UnitDir = t.TempDir()
	installedUnitDir = so.UnitDir
	t.Cleanup(func() { installedUnitDir = defaultUnitDir })
	home, _ := os.UserHomeDir()
	so.Home = home

	units, err := renderUnits(o, so)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		os.WriteFile(filepath.Join(so.UnitDir, u.Name), []byte(u.Content), 0o644)
	}
	ran := 0
	body := func(context.Context) ([]state.Outcome, error) { ran++; return nil, nil }
	if err := runJob(context.Background(), o, state.JobBackup, body); err != nil || ran != 1 {
		t.Fatalf("covered paths: err %v, ran %d", err, ran)
	}

	added, _ := jobOptions(t, stateDir, "/srv/cht-repo", "/mnt/usb/cht")
	added.Log = o.Log
	if err := runJob(context.Background(), added, state.JobBackup, body); err != nil || ran != 2 {
		t.Fatalf("a manual run must go on: err %v, ran %d", err, ran)
	}
	if !strings.Contains(logBuf.String(), "/mnt/usb/cht") || !strings.Contains(logBuf.String(), "run `cht-backup schedule install` again") {
		t.Fatalf("a manual run must warn about the units:\n%s", logBuf.String())
	}

	t.Setenv("SYSTEMD_EXEC_PID", strconv.Itoa(os.Getpid()))
	err = runJob(context.Background(), added, state.JobBackup, body)
	if ran != 2 || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "/mnt/usb/cht") || !strings.Contains(hintOf(err), "schedule install` again") {
		t.Fatalf("a scheduled run must stop before borg: err %v (hint %q), ran %d", err, hintOf(err), ran)
	}
	f, err := state.Load(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, e := range f.Entries {
		if e.LastRun.Status == state.StatusFailed && strings.Contains(e.LastRun.Error, "/mnt/usb/cht") {
			failed++
		}
	}
	if failed != 2 {
		t.Fatalf("the failure must be recorded for both repositories: %+v", f.Entries)
	}
}

// A scheduled run whose config file is gone still starts (the units have no EnvironmentFile=),
// and its failure is recorded in the state dir and pinged to the last known health-check URL.
func TestScheduledRunWithoutConfigFileIsRecordedAndPinged(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	var pings []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		pings = append(pings, r.URL.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	if err := state.MakeDir(stateDir); err != nil {
		t.Fatal(err)
	}
	if err := state.RememberPingURL(stateDir, srv.URL+"/ping/abc"); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "cht-backup.env")

	// By hand: the error is the user's to read; nothing is recorded.
	if code := run([]string{"cht-backup", "backup", "--config", missing, "--state-dir", stateDir}); code != exitUsage {
		t.Fatalf("manual run: exit %d", code)
	}
	if _, err := os.Stat(state.Path(stateDir)); err == nil {
		t.Fatal("a manual run recorded its config error")
	}

	t.Setenv("SYSTEMD_EXEC_PID", strconv.Itoa(os.Getpid()))
	if code := run([]string{"cht-backup", "backup", "--config", missing, "--state-dir", stateDir}); code != exitUsage {
		t.Fatalf("scheduled run: exit %d", code)
	}
	f, err := state.Load(stateDir)
	if err != nil || len(f.Entries) != 1 {
		t.Fatalf("state: %+v %v", f, err)
	}
	e := f.Entries[0]
	if e.Repository != missing || e.LastRun.Status != state.StatusFailed || !strings.Contains(e.LastRun.Error, "cannot read config file") {
		t.Fatalf("recorded: %+v", e)
	}
	if b, err := os.ReadFile(filepath.Join(stateDir, "metrics", "cht_backup.prom")); err != nil || !strings.Contains(string(b), missing) {
		t.Fatalf("metrics: %v\n%s", err, b)
	}
	mu.Lock()
	if strings.Join(pings, " ") != "/ping/abc/start /ping/abc/fail" {
		t.Fatalf("pings: %q", pings)
	}
	mu.Unlock()

	// Once a repository has a record, a failure to read the config stands under it: status
	// shows that repository's last backup failed.
	if _, err := state.Record(stateDir, state.Outcome{Job: state.JobBackup, Repository: "/srv/cht-repo", Status: state.StatusOK, Start: time.Now(), End: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"cht-backup", "backup", "--config", missing, "--state-dir", stateDir}); code != exitUsage {
		t.Fatalf("scheduled run: exit %d", code)
	}
	f, _ = state.Load(stateDir)
	for _, e := range f.Entries {
		if e.Repository == "/srv/cht-repo" && (e.LastRun.Status != state.StatusFailed || !strings.Contains(e.LastRun.Error, "cannot read config file")) {
			t.Fatalf("the known repository's record: %+v", e)
		}
	}
}
