package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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
