package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/state"
)

// status says whether CouchDB itself opened the copy the last verify restored: passed with the
// databases, failed with the database and why, or not run with the reason, so a verify that
// compared files only is not mistaken for the full proof.
func TestStatusShowsTheLastCouchDBDrill(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		drill *state.CouchDBDrill
		want  string
	}{
		{"passed", &state.CouchDBDrill{Status: "passed", Version: "3.4.3", Databases: []state.CouchDBDatabase{
			{Name: "_users", OK: true}, {Name: "medic", OK: true}}},
			"couchdb drill:    passed: CouchDB 3.4.3 opened 2 databases in the restored copy (_users, medic)"},
		{"failed", &state.CouchDBDrill{Status: "failed", Databases: []state.CouchDBDatabase{
			{Name: "_users", OK: true}, {Name: "medic", Problem: "12 documents fewer than at backup time"}}},
			"couchdb drill:    FAILED: medic: 12 documents fewer than at backup time"},
		{"not run", &state.CouchDBDrill{Status: "not run", Reason: "Docker is not reachable"},
			"couchdb drill:    not run: Docker is not reachable (the files were compared, but CouchDB did not open the copy)"},
		{"not recorded", nil, "couchdb drill:    not recorded: that verify compared the files only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			repo := "ssh://borg@backup.example/./cht"
			if _, err := state.Record(w.stateDir, state.Outcome{Job: state.JobBackup, Repository: repo, Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour), Archive: "h"}); err != nil {
				t.Fatal(err)
			}
			status := state.Outcome{Job: state.JobVerify, Repository: repo, Start: now.Add(-30 * time.Minute), End: now.Add(-20 * time.Minute), Archive: "h", CouchDB: tt.drill}
			if tt.drill != nil && tt.drill.Status == "failed" {
				status.Error = "CouchDB drill failed"
			}
			if _, err := state.Record(w.stateDir, status); err != nil {
				t.Fatal(err)
			}
			r := w.run("status", "--config", w.config, "--state-dir", w.stateDir, "--repo", repo)
			if got := lines(r.stdout, "couchdb drill:"); len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Fatalf("want %q:\n%s", tt.want, r)
			}
		})
	}
}
