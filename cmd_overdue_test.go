package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// overdue on the backup server: a repository without archive and a stale one are named (exit
// 2); a fresh one passes, also while a backup holds its lock; and it needs neither key nor
// passphrase, only the repository directory.
func TestOverdueFreshStaleAndLocked(t *testing.T) {
	w := newWorld(t)
	w.mustInit(t, w.remoteRepo())
	dir := w.remoteRepoPath()
	// Run as the server would: no passphrase, no key, no config.
	overdue := func(args ...string) result {
		t.Helper()
		return w.run(append([]string{"overdue", "--config", w.config}, args...)...)
	}

	r := overdue(dir)
	if r.code != 2 || len(lines(r.stdout, "OVERDUE "+dir+": it has received no archive yet")) != 1 {
		t.Fatalf("a repository with no archive must be overdue:\n%s", r)
	}

	src := filepath.Join(w.dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("night one"), 0o644)
	borgWithKey(t, w, testEnv["SSH_FORCED_KEY"], true, "create", "--timestamp", "2026-01-01T00:00:00", w.remoteRepo()+"::h-0", "src")
	borgWithKey(t, w, testEnv["SSH_FORCED_KEY"], true, "create", w.remoteRepo()+"::h-1", "src")
	made := time.Now()

	textfile := filepath.Join(w.dir, "overdue.prom")
	r = overdue(dir, "--textfile", textfile)
	if r.code != 0 || len(lines(r.stdout, "ok      "+dir+": last archive")) != 1 {
		t.Fatalf("a fresh repository must pass:\n%s", r)
	}
	prom, err := os.ReadFile(textfile)
	if err != nil || !strings.Contains(string(prom), `cht_backup_server_overdue{repository="`+dir+`"} 0`) {
		t.Errorf("textfile: %v\n%s", err, prom)
	}

	// A prune through the host's key is no backup: it must not make the repository look fresh.
	time.Sleep(time.Until(made.Add(3 * time.Second)))
	if r := w.run(append([]string{"prune", "--repo", w.remoteRepo(), "--glob-archives", "h-*", "--keep-weekly", "0", "--keep-monthly", "0"},
		w.common(testEnv["SSH_FORCED_KEY"])...)...); r.code != 0 || !strings.Contains(r.stdout, "deleted h-0") {
		t.Fatalf("prune of the old archive:\n%s", r)
	}
	r = overdue(dir, "--max-age", "2s", "--json")
	var ws []struct {
		Path     string `json:"path"`
		Overdue  bool   `json:"overdue"`
		Problem  string `json:"problem"`
		Activity struct {
			LastArchive time.Time `json:"last_archive"`
			LastCommit  time.Time `json:"last_commit"`
			Locked      bool      `json:"locked"`
		} `json:"activity"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ws); err != nil || len(ws) != 1 {
		t.Fatalf("overdue --json: %v\n%s", err, r)
	}
	if r.code != 2 || !ws[0].Overdue || !strings.Contains(ws[0].Problem, "more than --max-age 2s") {
		t.Errorf("a repository whose last archive is older than --max-age must be overdue:\n%s", r)
	}
	if ws[0].Activity.LastArchive.After(made) || !ws[0].Activity.LastCommit.After(ws[0].Activity.LastArchive) {
		t.Errorf("the last archive must be the backup's (before %v), the prune only a later commit: %+v", made, ws[0].Activity)
	}

	// A backup under way holds borg's lock; overdue reads on and reports the lock. borg create
	// reads the archive's one file from stdin here, so the test decides when it ends.
	cmd := exec.Command("borg", "create", "--stdin-name", "slow", w.remoteRepo()+"::h-2", "-")
	cmd.Env = append(append([]string{}, w.env...), "BORG_PASSCOMMAND=cat "+w.passFile,
		"BORG_RSH=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="+testEnv["SSH_KNOWN_HOSTS"]+" -i "+testEnv["SSH_FORCED_KEY"])
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "lock.exclusive")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("borg create did not take the repository lock within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stdin.Write([]byte("data of a backup still running"))
	r = overdue(dir, "--max-age", "1h")
	if r.code != 0 || len(lines(r.stdout, "locked now")) != 1 {
		t.Errorf("while a backup holds the lock, overdue must still read the repository:\n%s", r)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("borg create: %v", err)
	}
	r = overdue(dir, "--max-age", "1h", "--json")
	if r.code != 0 || strings.Contains(r.stdout, `"locked": true`) {
		t.Errorf("after the backup:\n%s", r)
	}
}

func TestOverdueNeedsPaths(t *testing.T) {
	w := newWorld(t)
	if r := w.run("overdue", "--config", w.config); r.code != 3 {
		t.Errorf("overdue without a path:\n%s", r)
	}
	if r := w.run("overdue", "--config", w.config, t.TempDir()); r.code != 2 || !strings.Contains(r.stdout, "not a borg repository") {
		t.Errorf("overdue of a directory that is no repository:\n%s", r)
	}
}
