package sources

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func TestSeqNumber(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want int64
		ok   bool
	}{
		{`"1234-g1AAAAFTeJzLYWBg4MhgTmHgz8tPSTV0MDQy1zMAQsMcoARTIkOS_P___7MymBMZc4EC7EbGJqmWJubYdOAxKY8FSDI0AKn_UJMYwSYZmSclpiSbYtOFx6QEkEn1YJOY" `, 1234, true},
		{`"0-g1AAAA"`, 0, true},
		{`17`, 17, true},
		{`"abc-def"`, 0, false},
		{`null`, 0, false},
	} {
		got, err := SeqNumber(json.RawMessage(tt.raw))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("SeqNumber(%s) = %d, %v; want %d, ok %v", tt.raw, got, err, tt.want, tt.ok)
		}
	}
}

// realCHT starts a CHT project whose couchdb service is the real CouchDB, with one database.
func realCHT(t *testing.T) (*sourcestest.Tree, *sourcestest.Containers) {
	t.Helper()
	sourcestest.NeedRealCouchDB(t)
	project := sourcestest.UniqueProject()
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project, o.EmptyCouchDB = project, true })
	cs := sourcestest.StartRealCHT(t, context.Background(), tree)
	c := cs.CouchFor(tree)
	c.Must(t, "PUT", "/medic?q=4", nil, nil)
	c.Must(t, "POST", "/medic/_bulk_docs", map[string]any{"docs": []map[string]any{{"_id": "a"}, {"_id": "b"}, {"_id": "c"}}}, nil)
	return tree, cs
}

// Before borg reads any file, the live CouchDB is asked for its figures; the manifest records
// them, and never the credentials.
func TestGatherRecordsLiveCouchDBFigures(t *testing.T) {
	tree, cs := realCHT(t)
	o := gatherOpts(tree, t.TempDir())
	o.Docker = cs.Client
	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	live := g.Manifest.CouchDBLive
	if live == nil || live.NotAsked != "" || live.Version != "3.4.3" || live.Image != sourcestest.RealCouchDBImage || live.AskedAt.IsZero() {
		t.Fatalf("live figures: %+v", live)
	}
	var medic *DatabaseFigures
	for i, d := range live.Databases {
		if d.Name == "medic" {
			medic = &live.Databases[i]
		}
	}
	if medic == nil || medic.DocCount != 3 || medic.UpdateSeq < 3 {
		t.Fatalf("medic's figures: %+v in %+v", medic, live.Databases)
	}
	data, _ := os.ReadFile(g.ManifestPath)
	for _, secret := range tree.SecretValues() {
		if strings.Contains(string(data), secret) {
			t.Fatalf("the manifest holds a .env secret:\n%s", data)
		}
	}
	if len(g.Notes) != 0 {
		t.Errorf("no note expected when CouchDB answers: %v", g.Notes)
	}
}

// COUCHDB_DATA that is not what the running CouchDB mounts fails, naming both paths.
func TestGatherRefusesCOUCHDB_DATAThatIsNotTheLiveMount(t *testing.T) {
	tree, cs := realCHT(t)
	stale := filepath.Join(t.TempDir(), "old-couchdb")
	if err := os.MkdirAll(filepath.Join(stale, "shards"), 0o755); err != nil {
		t.Fatal(err)
	}
	env, _ := os.ReadFile(tree.EnvFile)
	if err := os.WriteFile(tree.EnvFile, []byte(strings.ReplaceAll(string(env), "COUCHDB_DATA="+tree.CouchDBData, "COUCHDB_DATA="+stale)), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Docker = cs.Client
	g, err := Gather(context.Background(), o)
	if err == nil {
		g.Close()
		t.Fatal("a COUCHDB_DATA other than the live mount must fail")
	}
	if !strings.Contains(err.Error(), stale) || !strings.Contains(err.Error(), tree.CouchDBData) {
		t.Fatalf("the error must name both paths: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(state, "staging")); len(left) != 0 {
		t.Errorf("staging left behind: %v", left)
	}
}

// CouchDB stopped: the backup goes on from .env, records why CouchDB was not asked, and says so.
func TestGatherWithCouchDBStoppedSaysSo(t *testing.T) {
	tree, cs := realCHT(t)
	cs.Stop(t, context.Background())
	o := gatherOpts(tree, t.TempDir())
	o.Docker = cs.Client
	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if live := g.Manifest.CouchDBLive; live == nil || !strings.Contains(live.NotAsked, "CouchDB is not running") || len(live.Databases) != 0 {
		t.Fatalf("live: %+v", live)
	}
	if len(g.Notes) != 1 || !strings.Contains(g.Notes[0], "COUCHDB_DATA from") || !strings.Contains(g.Notes[0], tree.CouchDBData) {
		t.Fatalf("notes: %v", g.Notes)
	}
}

// A shard caught in CouchDB's compaction switch, with only its .couch.compact file in the list,
// still counts: CouchDB opens the database from that file. Beside its live file the .compact file
// counts for nothing.
func TestDatabasesOfCountsAShardCaughtInTheCompactionSwitch(t *testing.T) {
	dbs := DatabasesOf(map[string]int64{
		"shards/00000000-7fffffff/medic.1796134206.couch":         100,
		"shards/80000000-ffffffff/medic.1796134206.couch.compact": 80,
		"shards/00000000-7fffffff/users.1796134206.couch":         10,
		"shards/00000000-7fffffff/users.1796134206.couch.compact": 9,
	})
	got := map[string]Database{}
	for _, d := range dbs {
		got[d.Name] = d
	}
	if got["medic"].ShardFiles != 2 || got["medic"].Bytes != 180 {
		t.Errorf("medic: %+v, want both shards (one only as its .compact file)", got["medic"])
	}
	if got["users"].ShardFiles != 1 || got["users"].Bytes != 10 {
		t.Errorf("users: %+v, want the live shard only", got["users"])
	}
}
