package restore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources"
)

// The plan an in-place restore shows before the user says yes: the containers it stops (in
// stop order) and those it leaves alone, what it saves, moves aside and puts back.
func TestPlanDescribeSaysWhatItWillDo(t *testing.T) {
	m := manifestOf("/home/ubuntu/cht")
	m.CouchDB.DataDir = sources.FileOwner{Mode: "0755", UID: 5984, GID: 5984}
	base := Plan{
		Repository:     "ssh://borg@backup/./cht",
		Archive:        "chthost-2026-03-04T05:06:07",
		ArchiveCreated: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		ArchiveHost:    "chthost",
		Host:           sources.HostPaths{Project: "cht"},
		Placements:     []Placement{{Group: sources.GroupCouchDB, From: "home/ubuntu/cht/couchdb", To: "/srv/couchdb"}},
		Manifest:       m,
		drill:          DrillOptions{Mode: DrillNever},
	}
	describe := func(p Plan) string {
		var b strings.Builder
		p.Describe(&b)
		return b.String()
	}
	has := func(t *testing.T, out string, lines ...string) {
		t.Helper()
		for _, l := range lines {
			if !strings.Contains(out, l+"\n") {
				t.Errorf("plan lacks the line %q:\n%s", l, out)
			}
		}
	}
	lacks := func(t *testing.T, out string, parts ...string) {
		t.Helper()
		for _, s := range parts {
			if strings.Contains(out, s) {
				t.Errorf("plan says %q:\n%s", s, out)
			}
		}
	}

	t.Run("some containers down, nothing saved or moved", func(t *testing.T) {
		p := base
		p.Containers = []ContainerState{{Name: "cht-couchdb-1", State: "running"}, {Name: "cht-nginx-1", State: "exited"}, {Name: "cht-api-1", State: "paused"}}
		out := describe(p)
		has(t, out,
			"  (made 2026-03-04T05:06:07Z on host chthost)",
			`  2. stop the containers of compose project "cht": cht-api-1 (paused), cht-couchdb-1 (running)`,
			"     not running, so left as they are (neither stopped nor started): cht-nginx-1 (exited)",
			"  3. no container files to save (the archive holds none)",
			"  4. nothing to move aside (none of the paths below exists yet)",
			"       CouchDB data directory   -> /srv/couchdb (mode 0755, owner 5984:5984)",
			"  6. no files to copy into containers")
		lacks(t, out, ", CHT ", "then start CouchDB on a copy")
	})

	t.Run("all down, files saved, moved and put back", func(t *testing.T) {
		dir := t.TempDir()
		env := filepath.Join(dir, ".env")
		os.WriteFile(env, []byte("x"), 0o600)
		p := base
		p.CHTVersion = "4.5.0"
		p.drill = DrillOptions{}
		p.Stamp = "S"
		p.MoveAside = []string{env}
		p.SaveDir = "/var/lib/cht-backup/restore/saved"
		p.Containers = []ContainerState{{Name: "cht-nginx-1", State: "exited"}}
		p.ContainerParts = []PlannedContainerPart{{
			ContainerPart: ContainerPart{Group: sources.GroupTLS, Service: "nginx", Dir: "/etc/nginx/private/"},
			Container:     sources.Container{Name: "cht-nginx-1"},
			SavedTo:       "/var/lib/cht-backup/restore/saved/nginx",
		}}
		out := describe(p)
		has(t, out,
			"  (made 2026-03-04T05:06:07Z on host chthost, CHT 4.5.0)",
			"     then start CouchDB on a copy of it and check that every database opens (--couchdb auto)",
			`  2. stop the containers of compose project "cht": none is running`,
			"     not running, so left as they are (neither stopped nor started): cht-nginx-1 (exited)",
			"  3. save the containers' current files to /var/lib/cht-backup/restore/saved:",
			"       cht-nginx-1:/etc/nginx/private/ -> /var/lib/cht-backup/restore/saved/nginx",
			"       "+env+" -> "+env+".before-restore-S",
			"  6. copy the archive's files back into the containers:",
			"       TLS certificate and key  -> cht-nginx-1:/etc/nginx/private/")
	})

	t.Run("no containers", func(t *testing.T) {
		out := describe(base)
		has(t, out, `  2. stop the containers of compose project "cht": none found`)
		lacks(t, out, "not running, so left")
	})
}
