package state

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/borg"
)

func TestWatchesJudgeAgainstMaxAge(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	acts := map[string]*borg.Activity{
		"/r/fresh":   {LastArchive: now.Add(-2 * time.Hour), Bytes: 10, FreeBytes: 20},
		"/r/stale":   {LastArchive: now.Add(-3 * 24 * time.Hour), Bytes: 10, FreeBytes: -1, Locked: true},
		"/r/nothing": {LastCommit: now.Add(-time.Hour), Bytes: 1, FreeBytes: 20},
	}
	read := func(p string) (*borg.Activity, error) {
		if a, ok := acts[p]; ok {
			return a, nil
		}
		return nil, errors.New("not a borg repository")
	}
	ws := Watches([]string{"/r/fresh", "/r/stale", "/r/nothing", "/r/gone"}, read, 26*time.Hour, now)
	want := []struct {
		overdue bool
		problem string
	}{{false, ""}, {true, "its last archive is 3 days old, more than --max-age 26h0m0s"}, {true, "it has received no archive yet"}, {true, "cannot read it: not a borg repository"}}
	for i, w := range ws {
		if w.Overdue != want[i].overdue || w.Problem != want[i].problem {
			t.Errorf("%s: overdue %v %q, want %v %q", w.Path, w.Overdue, w.Problem, want[i].overdue, want[i].problem)
		}
	}
	m := string(WatchMetrics(ws, 26*time.Hour))
	for _, s := range []string{
		`cht_backup_server_overdue{repository="/r/fresh"} 0`,
		`cht_backup_server_overdue{repository="/r/gone"} 1`,
		`cht_backup_server_last_archive_timestamp_seconds{repository="/r/nothing"} 0`,
		`cht_backup_server_last_archive_timestamp_seconds{repository="/r/fresh"} 1.7961192e+09`,
		`cht_backup_server_repository_locked{repository="/r/stale"} 1`,
		`cht_backup_server_repository_free_bytes{repository="/r/fresh"} 20`,
	} {
		if !strings.Contains(m, s) {
			t.Errorf("metrics lack %s:\n%s", s, m)
		}
	}
	if strings.Contains(m, `cht_backup_server_repository_free_bytes{repository="/r/stale"}`) {
		t.Errorf("unknown free space written as a figure:\n%s", m)
	}
}

// An archive's age reads in days from two days on, in hours and minutes before.
func TestRoundAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		48 * time.Hour:                "2 days",
		47*time.Hour + 59*time.Minute: "47h59m0s",
		75 * time.Hour:                "3 days",
		90 * time.Second:              "2m0s",
	} {
		if got := roundAge(d); got != want {
			t.Errorf("roundAge(%s) = %q, want %q", d, got, want)
		}
	}
}
