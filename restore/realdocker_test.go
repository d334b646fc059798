//go:build !mutation

package restore

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// These tests run the real CouchDB image under dockerd. The mutation run (scripts/mutation.sh builds
// with -tags mutation) leaves them out: a CouchDB container for every mutant would take hours on two
// cores. The test command builds without the tag and runs them.

// CouchDB opens a copy of real data and its figures are compared with the recorded ones: fewer
// documents or a lower sequence than recorded fail, naming the database; a database whose shard
// files are gone is reported as deleted during the backup; the container and network are gone.
func TestDrillComparesWithRecordedFigures(t *testing.T) {
	sourcestest.NeedRealCouchDB(t)
	ctx := context.Background()
	project := sourcestest.UniqueProject()
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project, o.EmptyCouchDB = project, true })
	cs := sourcestest.StartRealCHT(t, ctx, tree)
	c := cs.CouchFor(tree)
	c.Must(t, "PUT", "/medic?q=2", nil, nil)
	c.Must(t, "POST", "/medic/_bulk_docs", map[string]any{"docs": []map[string]any{{"_id": "a"}, {"_id": "b"}, {"_id": "c"}}}, nil)
	cs.Stop(t, ctx)

	live := func(dbs ...sources.DatabaseFigures) *sources.Manifest {
		return &sources.Manifest{ProjectName: project, CouchDBLive: &sources.LiveCouchDB{Version: "3.4.3", AskedAt: time.Now(), Databases: dbs}}
	}
	copyOf := func() string {
		dst := filepath.Join(t.TempDir(), "couchdb")
		if err := copyForDrill(ctx, tree.CouchDBData, dst); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	o := DrillOptions{Mode: DrillAlways, Docker: cs.Client}

	d := DrillCouchDB(ctx, o, live(sources.DatabaseFigures{Name: "medic", DocCount: 3, UpdateSeq: 3}, sources.DatabaseFigures{Name: "gone", DocCount: 7, UpdateSeq: 7}), copyOf())
	if d.Status != DrillPassed || d.Version != "3.4.3" || d.Image != sourcestest.RealCouchDBImage {
		t.Fatalf("a copy with what was recorded must pass: %+v", d)
	}
	found := map[string]DatabaseFinding{}
	for _, f := range d.Databases {
		found[f.Name] = f
	}
	if f := found["medic"]; !f.OK || f.Restored == nil || f.Restored.DocCount != 3 || f.Restored.UpdateSeq < 3 {
		t.Errorf("medic: %+v", f)
	}
	if f := found["gone"]; !f.OK || !strings.Contains(f.Note, "deleted while the backup ran") {
		t.Errorf("a database without shard files was deleted during the backup, and said: %+v", f)
	}

	d = DrillCouchDB(ctx, o, live(sources.DatabaseFigures{Name: "medic", DocCount: 5, UpdateSeq: 3}), copyOf())
	if d.Status != DrillFailed || !strings.Contains(d.Reason, "database medic: 3 documents (with deleted ones), fewer than the 5") {
		t.Errorf("fewer documents than recorded must fail: %+v", d)
	}
	d = DrillCouchDB(ctx, o, live(sources.DatabaseFigures{Name: "medic", DocCount: 3, UpdateSeq: 40}), copyOf())
	if d.Status != DrillFailed || !strings.Contains(d.Reason, "behind the 40") {
		t.Errorf("a lower sequence than recorded must fail: %+v", d)
	}

	// A database with shard files CouchDB cannot open fails.
	broken := copyOf()
	shards, _ := filepath.Glob(filepath.Join(broken, "shards", "*", "medic.*.couch"))
	for _, s := range shards {
		if err := os.WriteFile(s, []byte("not a couch file"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d = DrillCouchDB(ctx, o, live(sources.DatabaseFigures{Name: "medic", DocCount: 3, UpdateSeq: 3}), broken)
	if d.Status != DrillFailed || !strings.Contains(d.Reason, "medic") {
		t.Errorf("damaged shard files must fail: %+v", d)
	}

	// No reference figures: the drill says so and only checks the databases open.
	d = DrillCouchDB(ctx, o, &sources.Manifest{ProjectName: project, CouchDBLive: &sources.LiveCouchDB{NotAsked: "CouchDB is not running"}}, copyOf())
	if d.Status != DrillPassed || !strings.Contains(d.Reference, "none: at backup time CouchDB is not running") {
		t.Errorf("without figures: %+v", d)
	}

	leftover, _ := cs.Client.ContainerList(ctx, containerListByLabel())
	if len(leftover) != 0 {
		t.Errorf("drill containers left behind: %v", leftover[0].Names)
	}
}

func containerListByLabel() container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", drillLabel+"="+strconv.Itoa(os.Getpid())))}
}
