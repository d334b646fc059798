package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
)

// A backup records the repository's size and free space: measured on disk for a local
// repository; borg's figure for a remote one, whose free space the forced-command key cannot
// tell. status shows them and says why the free space is unknown.
func TestBackupRecordsRepositorySizeAndFreeSpace(t *testing.T) {
	w := newWorld(t)
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"))
	local := filepath.Join(w.dir, "usb", "cht")
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		t.Fatal(err)
	}
	w.mustInit(t, local)
	w.mustInit(t, w.remoteRepo())
	r := w.run(append([]string{"backup", "--repo", local, "--repo", w.remoteRepo(), "--cht-dir", tree.Root, "--skip", "tls", "--skip", "credentials"},
		w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	f, err := state.Load(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if h := f.Usage[local]; len(h) != 1 || h[0].Bytes <= 0 || h[0].FreeBytes == nil || *h[0].FreeBytes <= 0 {
		t.Errorf("usage of the local repository: %+v", h)
	}
	if h := f.Usage[w.remoteRepo()]; len(h) != 1 || h[0].Bytes <= 0 || h[0].FreeBytes != nil {
		t.Errorf("usage of the remote repository through the forced key (size, no free space): %+v", h)
	}
	// The size is the one borg create reported: the repository's own deduplicated figure.
	out, err := runWithPassphrase(w, []string{"borg", "info", "--json", w.remoteRepo()})
	var info borg.RepositoryInfo
	if err != nil || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("borg info: %v\n%s", err, out)
	}
	if h := f.Usage[w.remoteRepo()]; len(h) == 1 && h[0].Bytes != info.Cache.Stats.UniqueCSize {
		t.Errorf("remote repository size %d, borg says %d", h[0].Bytes, info.Cache.Stats.UniqueCSize)
	}
	s := w.run("status", "--config", w.config, "--state-dir", w.stateDir, "--repo", local, "--repo", w.remoteRepo(), "--cht-dir", tree.Root)
	if d := lines(s.stdout, "disk:"); len(d) != 2 || !strings.Contains(d[0]+d[1], "free space unknown (the SSH key runs borg only") ||
		!strings.Contains(d[0]+d[1], " free") {
		t.Errorf("status does not show the sizes:\n%s", s)
	}

	// Through a key that may run commands, the free space of the server's disk is known too.
	r = w.run(append([]string{"backup", "--repo", w.remoteRepo(), "--cht-dir", tree.Root, "--skip", "tls", "--skip", "credentials"},
		w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("backup through the shell key:\n%s", r)
	}
	f, _ = state.Load(w.stateDir)
	if h := f.Usage[w.remoteRepo()]; len(h) != 2 || h[1].Bytes <= 0 || h[1].FreeBytes == nil || *h[1].FreeBytes <= 0 {
		t.Errorf("usage of the remote repository through the shell key (size and free space): %+v", h)
	}
}

// status warns, and exits 1, when the recorded runs say the disk is full within
// --disk-warn-days; the metrics carry the same figures.
func TestStatusWarnsBeforeTheDiskIsFull(t *testing.T) {
	w := newWorld(t)
	repo := "ssh://borg@backup.example/./cht"
	now := time.Now()
	const gib = int64(1) << 30
	for i := 9; i >= 0; i-- {
		end := now.Add(-time.Duration(i)*24*time.Hour - time.Hour)
		free := 30*gib - int64(9-i)*2*gib // 12 GiB left after the last night, 2 GiB a night: 6 days
		if _, err := state.Record(w.stateDir, state.Outcome{Job: state.JobBackup, Repository: repo, Start: end.Add(-time.Minute), End: end,
			Archive: "h", Usage: &state.UsageSample{Time: end, Bytes: 100*gib + int64(9-i)*2*gib, FreeBytes: &free}}); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"status", "--config", w.config, "--state-dir", w.stateDir, "--repo", repo}
	r := w.run(base...)
	if r.code != 1 || len(lines(r.stdout, "ATTENTION: the backup disk is full in about 6 days")) != 1 || len(lines(r.stdout, "full in about 6 days")) != 2 {
		t.Errorf("status must warn 6 days ahead (exit 1):\n%s", r)
	}
	if r := w.run(append(base, "--disk-warn-days", "5")...); r.code != 0 {
		t.Errorf("6 days left is no warning with --disk-warn-days 5:\n%s", r)
	}
	if err := os.WriteFile(w.config, []byte("CHT_BACKUP_DISK_WARN_DAYS=5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := w.run(base...); r.code != 0 {
		t.Errorf("the config file's CHT_BACKUP_DISK_WARN_DAYS=5 is not taken:\n%s", r)
	}
	j := w.run(append(base, "--json")...)
	var rep StatusReport
	if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil || len(rep.Repositories) != 1 || rep.Repositories[0].Disk == nil || rep.Repositories[0].Disk.DaysUntilFull == nil {
		t.Fatalf("status --json: %v\n%s", err, j)
	}
	if d := *rep.Repositories[0].Disk.DaysUntilFull; d < 5.9 || d > 6.1 {
		t.Errorf("days until full %.2f, want 6", d)
	}
}
