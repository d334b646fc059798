package sources

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func TestCompactionLive(t *testing.T) {
	tests := []struct {
		name, live string
		ok         bool
	}{
		{"medic.1700000000.couch.compact.data", "medic.1700000000.couch", true},
		{"medic.1700000000.couch.compact.meta", "medic.1700000000.couch", true},
		{"medic.1700000000.couch.compact", "medic.1700000000.couch", true},
		{"3e8a1d0c5a0f1b2e4c6d8f0a1b2c3d4e.compact.view", "3e8a1d0c5a0f1b2e4c6d8f0a1b2c3d4e.view", true},
		{"medic.1700000000.couch", "", false},
		{"3e8a1d0c5a0f1b2e4c6d8f0a1b2c3d4e.view", "", false},
		{"_dbs.couch", "", false},
		{".couch.compact.data", "", false},
		{"notes.compact.data", "", false}, // not a database file's compaction
		{"medic.1700000000.couch.compact.data.bak", "", false},
	}
	for _, tt := range tests {
		live, ok := compactionLive(tt.name)
		if live != tt.live || ok != tt.ok {
			t.Errorf("compactionLive(%q) = %q, %v; want %q, %v", tt.name, live, ok, tt.live, tt.ok)
		}
	}
}

func TestCompactionLeftovers(t *testing.T) {
	const sh = "h/opt/couchdb/data/shards/00000000-7fffffff/"
	const mr = "h/opt/couchdb/data/.shards/00000000-7fffffff/medic.1700000000_design/mrview/"
	tests := []struct {
		name  string
		files []string
		want  []string
	}{
		{"none", []string{sh + "medic.1700000000.couch", mr + "abc.view"}, nil},
		{"data and meta beside the live file", []string{sh + "medic.1700000000.couch", sh + "medic.1700000000.couch.compact.meta", sh + "medic.1700000000.couch.compact.data"},
			[]string{sh + "medic.1700000000.couch.compact.data", sh + "medic.1700000000.couch.compact.meta"}},
		{"the renamed file of a swap beside the live file", []string{sh + "medic.1700000000.couch", sh + "medic.1700000000.couch.compact"}, []string{sh + "medic.1700000000.couch.compact"}},
		{"the renamed file of a swap alone is the database", []string{sh + "medic.1700000000.couch.compact"}, nil},
		{"compaction files without their live file are kept", []string{sh + "medic.1700000000.couch.compact.data", sh + "medic.1700000000.couch.compact.meta"}, nil},
		{"a view index's", []string{mr + "abc.view", mr + "abc.compact.view", mr + "def.compact.view"}, []string{mr + "abc.compact.view"}},
		{"the live file must be in the same directory", []string{"h/opt/couchdb/data/shards/80000000-ffffffff/medic.1700000000.couch", sh + "medic.1700000000.couch.compact.data"}, nil},
		{"another database's live file does not count", []string{sh + "users.1700000000.couch", sh + "medic.1700000000.couch.compact.data"}, nil},
		{"a node-local database", []string{"h/opt/couchdb/data/_dbs.couch", "h/opt/couchdb/data/_dbs.couch.compact.data"}, []string{"h/opt/couchdb/data/_dbs.couch.compact.data"}},
	}
	for _, tt := range tests {
		if got := CompactionLeftovers(tt.files); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: CompactionLeftovers = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Compaction files beside their live file are left out of the archive and of every count the
// restore drill compares; one without its live file is kept; the manifest names the rule.
func TestGatherLeavesOutCompactionInProgress(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	o := gatherOpts(tree, t.TempDir())
	o.Skip = []string{PartTLS, PartCredentials}
	before, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	before.Close()
	// The inventory the gather's one walk gives is the one a walk of its own gives.
	if inv, err := InventoryCouchDB(context.Background(), tree.CouchDBData); err != nil || !reflect.DeepEqual(inv, before.Manifest.CouchDB) {
		t.Fatalf("inventory from the gather's walk:\n%+v\nfrom InventoryCouchDB:\n%+v (%v)", before.Manifest.CouchDB, inv, err)
	}

	write := func(p string, n int) string {
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	shard := tree.CouchFiles[slices.IndexFunc(tree.CouchFiles, func(p string) bool { return strings.Contains(p, "/shards/") })]
	view := tree.ViewFiles[0]
	left := []string{
		write(shard+".compact.data", 3000),
		write(shard+".compact.meta", 200),
		write(strings.TrimSuffix(view, ".view")+".compact.view", 500),
		write(filepath.Join(tree.CouchDBData, "_dbs.couch.compact.data"), 100), // a system database
	}
	orphan := write(filepath.Join(filepath.Dir(shard), "gone.1700009999.couch.compact.data"), 700)

	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m := g.Manifest
	if m.Compaction.Rule != CompactionRule || m.Compaction.Bytes != 3800 || len(m.Compaction.Files) != 4 {
		t.Fatalf("manifest compaction: %+v", m.Compaction)
	}
	for _, p := range left {
		if !slices.Contains(m.Compaction.Files, strings.TrimPrefix(p, "/")) {
			t.Errorf("%s is not named as left out: %v", p, m.Compaction.Files)
		}
	}
	pats, err := os.ReadFile(g.ExcludeFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "pf:" + strings.Join(sorted(left), "\npf:") + "\n"; string(pats) != want {
		t.Fatalf("exclude patterns:\n%s\nwant:\n%s", pats, want)
	}
	// The counts are those of the tree without the left-out files, plus the orphan.
	for _, name := range []string{GroupIndexes, GroupCouchDB} {
		b, a := before.Manifest.Group(name), m.Group(name)
		wantFiles, wantBytes := b.Files, b.Bytes
		if name == GroupCouchDB {
			wantFiles, wantBytes = wantFiles+1, wantBytes+700
		}
		if a.Files != wantFiles || a.Bytes != wantBytes {
			t.Errorf("group %s: %d files %d bytes, want %d %d", name, a.Files, a.Bytes, wantFiles, wantBytes)
		}
	}
	if !slices.Equal(before.Manifest.CouchDB.Databases, m.CouchDB.Databases) {
		t.Errorf("databases: %v, want %v", m.CouchDB.Databases, before.Manifest.CouchDB.Databases)
	}

	// Without compaction files nothing is left out and no exclude file is written.
	for _, p := range append(left, orphan) {
		os.Remove(p)
	}
	g2, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if g2.ExcludeFile != "" || len(g2.Manifest.Compaction.Files) != 0 || g2.Manifest.Compaction.Rule != CompactionRule {
		t.Fatalf("no compaction in progress: %q %+v", g2.ExcludeFile, g2.Manifest.Compaction)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
