package restore

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources"
)

// An archive that holds compaction files beside their live file (a compaction CouchDB began while
// borg read) is restored without them; one without its live file stays, as it may be all there
// is of that database; the copy still matches the archive, and the groups say what was left out.
func TestDropCompactionLeftovers(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	extra := map[string]string{
		"h/cht/couchdb/shards/00-ff/medic.1.couch.compact.data":              "cd",
		"h/cht/couchdb/shards/00-ff/medic.1.couch.compact.meta":              "cm",
		"h/cht/couchdb/_dbs.couch.compact":                                   "swap",
		"h/cht/couchdb/.shards/00-ff/medic.1_design/mrview/a.compact.view":   "cv",
		"h/cht/couchdb/shards/00-ff/_users.9.couch.compact.data":             "only copy",
		"h/cht/couchdb/.shards/00-ff/medic.1_design/mrview/old.compact.view": "no live view",
	}
	for p, body := range extra {
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(p)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	items, dropped, err := dropCompactionLeftovers(m, archivedItems(t, root), root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"h/cht/couchdb/.shards/00-ff/medic.1_design/mrview/a.compact.view",
		"h/cht/couchdb/_dbs.couch.compact",
		"h/cht/couchdb/shards/00-ff/medic.1.couch.compact.data",
		"h/cht/couchdb/shards/00-ff/medic.1.couch.compact.meta",
	}
	if !reflect.DeepEqual(dropped, want) {
		t.Fatalf("dropped %q, want %q", dropped, want)
	}
	for p := range extra {
		_, err := os.Lstat(filepath.Join(root, filepath.FromSlash(p)))
		gone := os.IsNotExist(err)
		if isDropped := strings.Contains(strings.Join(want, "\n"), p); gone != isDropped {
			t.Errorf("%s: removed %v, want %v (%v)", p, gone, isDropped, err)
		}
	}
	for _, it := range items {
		for _, p := range want {
			if it.Path == p {
				t.Errorf("%s is still in the item list the copy is checked against", p)
			}
		}
	}
	for _, live := range []string{"h/cht/couchdb/shards/00-ff/medic.1.couch", "h/cht/couchdb/_dbs.couch", "h/cht/couchdb/.shards/00-ff/medic.1_design/mrview/a.view"} {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(live))); err != nil {
			t.Errorf("live file %s: %v", live, err)
		}
	}

	c := Check(context.Background(), m, items, func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) })
	noteCompactionDropped(&c, m, dropped)
	if !c.OK {
		t.Fatalf("the copy without the dropped files must match the archive: %v", c.Problems)
	}
	for name, wantLine := range map[string]string{
		sources.GroupCouchDB: "3 files of a compaction CouchDB began while borg read left out (_dbs.couch.compact, shards/00-ff/medic.1.couch.compact.data, shards/00-ff/medic.1.couch.compact.meta)",
		sources.GroupIndexes: "1 file of a compaction CouchDB began while borg read left out (.shards/00-ff/medic.1_design/mrview/a.compact.view)",
	} {
		if g := group(t, c, name); !strings.Contains(g.Line, wantLine) {
			t.Errorf("%s line lacks %q:\n%s", name, wantLine, g.Line)
		}
	}
	if g := group(t, c, sources.GroupEnv); strings.Contains(g.Line, "compaction") {
		t.Errorf("the .env line speaks of compaction: %s", g.Line)
	}
}

// Nothing to drop: the items come back as they were and the groups say nothing of compaction.
func TestDropCompactionLeftoversWithoutAny(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	before := archivedItems(t, root)
	items, dropped, err := dropCompactionLeftovers(m, before, root)
	if err != nil || dropped != nil || !reflect.DeepEqual(items, before) {
		t.Fatalf("got %d items, dropped %q, err %v; want the %d items unchanged", len(items), dropped, err, len(before))
	}
	c := Check(context.Background(), m, items, func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) })
	noteCompactionDropped(&c, m, dropped)
	for _, g := range c.Groups {
		if strings.Contains(g.Line, "compaction") {
			t.Errorf("%s line speaks of compaction: %s", g.Name, g.Line)
		}
	}
}

func TestCompactionNoteListsAFewNames(t *testing.T) {
	m := &sources.Manifest{Sources: sources.ManifestSources{CouchDBData: "/h/cht/couchdb"}}
	got := compactionNote(m, []string{"h/cht/couchdb/d/a.compact.view", "h/cht/couchdb/d/b.compact.view", "h/cht/couchdb/d/c.compact.view", "h/cht/couchdb/d/e.compact.view", "h/cht/couchdb/d/f.compact.view"})
	if !strings.HasPrefix(got, "5 files of a compaction CouchDB began while borg read left out (d/a.compact.view, d/b.compact.view, d/c.compact.view and 2 more)") {
		t.Errorf("note: %s", got)
	}
}
