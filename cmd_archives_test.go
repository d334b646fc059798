package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// archives --json is part of the interface contract: an array of objects with at least
// repository, name and time (RFC 3339), oldest first; partial .checkpoint archives are marked and
// never chosen as latest.
func TestArchivesListsOldestFirstAndLatestSkipsCheckpoints(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	if r := w.run(w.backupArgs(h)...); r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := w.run(w.backupArgs(h)...); r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	time.Sleep(1100 * time.Millisecond)
	// What an interrupted backup leaves behind, newest of all.
	if out, err := runWithPassphrase(w, []string{"borg", "create", w.remoteRepo() + "::interrupted.checkpoint", h.tree.EnvFile}); err != nil {
		t.Fatalf("borg create checkpoint: %v\n%s", err, out)
	}
	// borg numbers a further checkpoint of the same name.
	time.Sleep(1100 * time.Millisecond)
	if out, err := runWithPassphrase(w, []string{"borg", "create", w.remoteRepo() + "::interrupted.checkpoint.1", h.tree.EnvFile}); err != nil {
		t.Fatalf("borg create checkpoint: %v\n%s", err, out)
	}

	args := append([]string{"archives", "--json", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_FORCED_KEY"])...)
	r := w.run(args...)
	if r.code != 0 {
		t.Fatalf("archives:\n%s", r)
	}
	var raw []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil || len(raw) != 4 {
		t.Fatalf("want a JSON array of 4 archives: %v\n%s", err, r)
	}
	var prev time.Time
	for i, a := range raw {
		for _, key := range []string{"repository", "name", "time"} {
			if _, ok := a[key]; !ok {
				t.Errorf("archive %d lacks %q: %v", i, key, a)
			}
		}
		ts, err := time.Parse(time.RFC3339, a["time"].(string))
		if err != nil {
			t.Errorf("time %v is not RFC 3339: %v", a["time"], err)
		}
		if ts.Before(prev) {
			t.Errorf("archives not oldest first: %v", raw)
		}
		prev = ts
		if a["repository"] != w.remoteRepo() {
			t.Errorf("repository %v", a["repository"])
		}
	}
	if raw[2]["name"] != "interrupted.checkpoint" || raw[2]["checkpoint"] != true || raw[0]["checkpoint"] != false ||
		raw[3]["name"] != "interrupted.checkpoint.1" || raw[3]["checkpoint"] != true {
		t.Errorf("checkpoint not marked: %v", raw)
	}

	// The two backups counted 2 archives; the listing saw 4, and status counts from it.
	st := w.run("status", "--json", "--config", w.config, "--state-dir", w.stateDir, "--repo", w.remoteRepo())
	var rep StatusReport
	if err := json.Unmarshal([]byte(st.stdout), &rep); err != nil || len(rep.Repositories) != 1 || rep.Repositories[0].Archives == nil || *rep.Repositories[0].Archives != 4 {
		t.Errorf("status after archives listed 4 must count 4: %v\n%s", err, st)
	}

	text := w.run(append([]string{"archives", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if !strings.Contains(text.stdout, "partial") || len(lines(text.stdout, " files ")) != 4 {
		t.Errorf("text listing:\n%s", text)
	}

	// latest is the newest complete archive, not the checkpoint.
	v := w.run(append([]string{"verify", "latest", "--json", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if v.code != 0 || !strings.Contains(v.stdout, raw[1]["name"].(string)) || strings.Contains(v.stdout, "interrupted.checkpoint") {
		t.Fatalf("latest must be %v:\n%s", raw[1]["name"], v)
	}
}
