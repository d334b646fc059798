package main

import (
	"crypto/rand"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// borgWithKey runs plain borg through the test sshd with the given key, for setup and for what
// the backup server does on its own (compaction). pass adds the passphrase (tests only).
func borgWithKey(t *testing.T, w *world, key string, pass bool, args ...string) string {
	t.Helper()
	cmd := exec.Command("borg", args...)
	cmd.Dir = w.dir
	cmd.Env = append(append([]string{}, w.env...),
		"BORG_RSH=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o UserKnownHostsFile="+testEnv["SSH_KNOWN_HOSTS"]+" -i "+key)
	if pass {
		cmd.Env = append(cmd.Env, "BORG_PASSPHRASE="+w.passphrase)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("borg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// allArchives lists the repository's archives, checkpoints too, oldest first.
func allArchives(t *testing.T, w *world) []string {
	t.Helper()
	out := borgWithKey(t, w, testEnv["SSH_SHELL_KEY"], true, "list", "--consider-checkpoints", "--short", "--sort-by", "timestamp", w.remoteRepo())
	return strings.Fields(out)
}

// repoBytes is what a repository's segment files take on the server.
func repoBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Retention through the append-only key marks archives deleted and frees nothing; only the
// server's own compaction key gives the space back. A .checkpoint newer than every complete
// archive survives, and the policy comes from the config file like every setting.
func TestPruneAppendOnlyThenServerCompaction(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	w.mustInit(t, w.remoteRepo())
	forced := testEnv["SSH_FORCED_KEY"]

	src := filepath.Join(w.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	type arch struct {
		name string
		age  time.Duration
	}
	archives := []arch{{"h-old60", 60 * 24 * time.Hour}, {"h-old40", 40 * 24 * time.Hour}, {"h-old20", 20 * 24 * time.Hour},
		{"h-recent", time.Hour}, {"h-interrupted.checkpoint", time.Minute}}
	for _, a := range archives {
		blob := make([]byte, 2<<20) // incompressible and unique: each archive owns 2 MiB
		rand.Read(blob)
		if err := os.WriteFile(filepath.Join(src, "data"), blob, 0o644); err != nil {
			t.Fatal(err)
		}
		borgWithKey(t, w, forced, true, "create", "--timestamp", now.Add(-a.age).Format("2006-01-02T15:04:05"), w.remoteRepo()+"::"+a.name, "src")
	}
	// The CHT docs' default keeps a month's archive for ever; this host's config narrows it.
	if err := os.WriteFile(w.config, []byte("CHT_BACKUP_KEEP_WEEKLY=0\nCHT_BACKUP_KEEP_MONTHLY=0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"prune", "--repo", w.remoteRepo(), "--glob-archives", "h-*"}, w.common(forced)...)

	dry := w.run(append(args, "--dry-run")...)
	if dry.code != 0 {
		t.Fatalf("prune --dry-run:\n%s", dry)
	}
	for _, a := range []string{"h-old60", "h-old40", "h-old20"} {
		if len(lines(dry.stdout, "would prune "+a)) != 1 {
			t.Errorf("dry run does not list %s:\n%s", a, dry)
		}
	}
	if got := allArchives(t, w); len(got) != len(archives) {
		t.Fatalf("dry run changed the repository: %v", got)
	}

	before := repoBytes(t, w.remoteRepoPath())
	r := w.run(append(args, "--json")...)
	if r.code != 0 {
		t.Fatalf("prune:\n%s", r)
	}
	var res []PruneResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res) != 1 {
		t.Fatalf("prune --json: %v\n%s", err, r)
	}
	if strings.Join(res[0].Pruned, ",") != "h-old20,h-old40,h-old60" && strings.Join(res[0].Pruned, ",") != "h-old60,h-old40,h-old20" {
		t.Errorf("pruned %v, want the three old archives", res[0].Pruned)
	}
	checkpointKept := false
	for _, k := range res[0].Kept {
		checkpointKept = checkpointKept || (k.Archive == "h-interrupted.checkpoint" && k.Rule == "checkpoint")
	}
	if !checkpointKept || res[0].Archives != 1 {
		t.Errorf("the checkpoint newer than every complete archive must stay, with h-recent (the one complete archive left): %+v", res[0])
	}
	if !strings.Contains(res[0].SpaceNote, "no space is freed") {
		t.Errorf("the output does not say plainly that nothing is freed: %q", res[0].SpaceNote)
	}
	got := allArchives(t, w)
	if strings.Join(got, ",") != "h-recent,h-interrupted.checkpoint" {
		t.Errorf("archives left: %v", got)
	}
	afterPrune := repoBytes(t, w.remoteRepoPath())
	if afterPrune < before {
		t.Errorf("prune through the append-only key freed space: %d bytes, %d before", afterPrune, before)
	}
	// The append-only key cannot make the deletion final either.
	borgWithKey(t, w, forced, false, "compact", w.remoteRepo())
	if n := repoBytes(t, w.remoteRepoPath()); n < afterPrune {
		t.Errorf("compaction through the append-only key freed space: %d bytes, %d before", n, afterPrune)
	}

	// The server side, as `schedule print --server` sets it up: the repository's own flag off
	// (the CHT host's forced command keeps it append-only for the host), then the compaction key.
	// test-env.sh puts the compaction key in authorized_keys (again, should a setup without it
	// have run on this machine meanwhile).
	if out, err := exec.Command("bash", "scripts/test-env.sh").CombinedOutput(); err != nil {
		t.Fatalf("scripts/test-env.sh: %v\n%s", err, out)
	}
	onServer := exec.Command("ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+testEnv["SSH_KNOWN_HOSTS"], "-i", testEnv["SSH_SHELL_KEY"], "-p", testEnv["SSH_PORT"],
		testEnv["SSH_USER"]+"@"+testEnv["SSH_HOST"], "borg", "config", w.remoteRepoPath(), "append_only", "0")
	if out, err := onServer.CombinedOutput(); err != nil {
		t.Fatalf("borg config on the server: %v\n%s", err, out)
	}
	borgWithKey(t, w, testEnv["SSH_COMPACT_KEY"], false, "check", "--repository-only", w.remoteRepo())
	borgWithKey(t, w, testEnv["SSH_COMPACT_KEY"], false, "compact", w.remoteRepo())
	afterCompact := repoBytes(t, w.remoteRepoPath())
	if freed := afterPrune - afterCompact; freed < 3*(2<<20) {
		t.Errorf("server-side compaction freed %d bytes, want at least the three pruned archives' 6 MiB", freed)
	}
	if got := allArchives(t, w); strings.Join(got, ",") != "h-recent,h-interrupted.checkpoint" {
		t.Errorf("compaction changed the archives: %v", got)
	}

	// Recorded like every job.
	st, err := os.ReadFile(filepath.Join(w.stateDir, "state.json"))
	if err != nil || !strings.Contains(string(st), `"job": "prune"`) {
		t.Errorf("prune not recorded in the state file: %v\n%s", err, st)
	}
	m, err := os.ReadFile(filepath.Join(w.stateDir, "metrics", "cht_backup.prom"))
	if err != nil || !strings.Contains(string(m), `cht_backup_last_run_success{job="prune"`) {
		t.Errorf("prune not in the metrics: %v\n%s", err, m)
	}
}
