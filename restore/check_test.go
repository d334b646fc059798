package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
)

// copyTree writes a small extracted archive under root and returns the manifest that describes it.
func copyTree(t *testing.T, root string) *sources.Manifest {
	t.Helper()
	files := map[string]string{
		"h/cht/couchdb/shards/00-ff/medic.1.couch":                     strings.Repeat("m", 1000),
		"h/cht/couchdb/shards/00-ff/_users.2.couch":                    strings.Repeat("u", 500),
		"h/cht/couchdb/_dbs.couch":                                     strings.Repeat("d", 100),
		"h/cht/couchdb/.shards/00-ff/medic.1_design/mrview/a.view":     strings.Repeat("v", 300),
		"h/cht/upgrade-service/.env":                                   "COUCHDB_PASSWORD=x\n",
		"cht-backup/containers/nginx/etc/nginx/private/cert.pem":       "cert",
		"cht-backup/containers/nginx/etc/nginx/private/certbot/readme": "r",
	}
	sums := map[string]string{}
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p, "couchdb/") {
			s := sha256.Sum256([]byte(body))
			sums[p] = hex.EncodeToString(s[:])
		}
	}
	os.MkdirAll(filepath.Join(root, "h/cht/couchdb/.delete"), 0o755)
	return &sources.Manifest{
		FormatVersion: 1,
		Sources:       sources.ManifestSources{CouchDBData: "/h/cht/couchdb", EnvFile: "/h/cht/upgrade-service/.env"},
		Groups: []sources.Group{
			{Name: sources.GroupIndexes, Root: "h/cht/couchdb/.shards", Paths: []string{"h/cht/couchdb/.shards"}, Files: 1, Dirs: 4, Bytes: 300},
			{Name: sources.GroupCouchDB, Root: "h/cht/couchdb", Paths: []string{"h/cht/couchdb/shards", "h/cht/couchdb/_dbs.couch", "h/cht/couchdb/.delete"}, Files: 3, Dirs: 3, Bytes: 1600},
			{Name: sources.GroupEnv, Root: "h/cht/upgrade-service/.env", Paths: []string{"h/cht/upgrade-service/.env"}, Files: 1, Bytes: 19},
			{Name: sources.GroupTLS, Root: "cht-backup/containers/nginx/etc/nginx/private", Paths: []string{"cht-backup/containers/nginx/etc/nginx/private"}, Files: 2, Dirs: 2, Bytes: 5},
		},
		SHA256:  sums,
		Skipped: []sources.SkippedPart{{Part: "credentials", Reason: "credentials: skipped on request"}},
		CouchDB: sources.CouchDBInventory{Databases: []sources.Database{
			{Name: "_users", ShardFiles: 1, Bytes: 500},
			{Name: "medic", ShardFiles: 1, Bytes: 1000, ViewIndexFiles: 1, ViewIndexBytes: 300},
		}},
	}
}

// archivedItems lists root as `borg list --json-lines` lists an archive of it.
func archivedItems(t *testing.T, root string) []borg.Item {
	t.Helper()
	var items []borg.Item
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		it := borg.Item{Path: filepath.ToSlash(rel), Type: "-"}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			it.Type = "d"
		case fi.Mode()&fs.ModeSymlink != 0:
			it.Type = "l"
		default:
			it.Size = fi.Size()
		}
		items = append(items, it)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// check compares root with m and with items, borg's list of the archive (nil: root as it is now).
func check(t *testing.T, root string, m *sources.Manifest, items []borg.Item) CheckResult {
	t.Helper()
	if items == nil {
		items = archivedItems(t, root)
	}
	return Check(context.Background(), m, items, func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) })
}

func group(t *testing.T, c CheckResult, name string) GroupCheck {
	t.Helper()
	for _, g := range c.Groups {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no group %s in %+v", name, c.Groups)
	return GroupCheck{}
}

func TestCheckPassesAnIdenticalCopy(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	c := check(t, root, m, nil)
	if !c.OK {
		t.Fatalf("identical copy failed: %v", c.Problems)
	}
	if g := group(t, c, sources.GroupCouchDB); !strings.Contains(g.Line, "every file as borg archived it") || g.Archived == nil || g.Archived.Files != 3 {
		t.Errorf("couchdb line: %+v", g)
	}
	if g := group(t, c, sources.GroupTLS); g.SHA256 != 2 || !strings.Contains(g.Line, "as counted") || !strings.HasSuffix(g.Line, "sha256 of 2 files match") {
		t.Errorf("tls line: %+v", g)
	}
	// A copy that holds exactly what was counted neither grew nor shrank, and the line says
	// nothing of more, fewer or checksums it has none of; a group without directories does not
	// name them.
	g := group(t, c, sources.GroupCouchDB)
	if g.Grew || g.Line != "3 files in 3 directories, 1.6 KiB: every file as borg archived it" {
		t.Errorf("an identical couchdb copy: grew %v, line %q", g.Grew, g.Line)
	}
	if g := group(t, c, sources.GroupEnv); g.Line != "1 file, 19 B: as counted at backup time, sha256 of 1 file matches" {
		t.Errorf("env line: %q", g.Line)
	}
	if g := group(t, c, "credentials"); !g.Skipped || !strings.Contains(g.Line, "not in this archive") {
		t.Errorf("a skipped part must be said: %+v", g)
	}
}

// CouchDB writes while borg reads: more than the manifest counted is fine, and said.
func TestCheckAcceptsCouchDBGrowthAndSaysSo(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	f, _ := os.OpenFile(filepath.Join(root, "h/cht/couchdb/shards/00-ff/medic.1.couch"), os.O_APPEND|os.O_WRONLY, 0)
	f.Write(make([]byte, 4096))
	f.Close()
	os.WriteFile(filepath.Join(root, "h/cht/couchdb/shards/00-ff/new.3.couch"), []byte("n"), 0o644)
	c := check(t, root, m, nil)
	g := group(t, c, sources.GroupCouchDB)
	if !c.OK || !g.Grew || !strings.Contains(g.Line, "1 file and 4.0 KiB more") || !strings.Contains(g.Line, "CouchDB wrote") {
		t.Fatalf("growth must pass and be said: %+v %v", g, c.Problems)
	}
}

// CouchDB compacts while borg reads: files smaller than counted, compaction files and a database
// that vanished before borg read them are fine when the copy holds what borg archived. A deleted
// database is said.
func TestCheckAcceptsCompactionAndDeletionDuringTheBackup(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	m.Groups[1].Files++ // a compaction file counted at the start, gone when borg read
	m.Groups[1].Paths = append(m.Groups[1].Paths, "h/cht/couchdb/_nodes.couch.compact.data")
	m.CouchDB.Databases = append(m.CouchDB.Databases, sources.Database{Name: "old-db", ShardFiles: 2, Bytes: 10})
	os.Truncate(filepath.Join(root, "h/cht/couchdb/shards/00-ff/medic.1.couch"), 200)
	os.Truncate(filepath.Join(root, "h/cht/couchdb/.shards/00-ff/medic.1_design/mrview/a.view"), 30)
	c := check(t, root, m, nil)
	if !c.OK {
		t.Fatalf("a compacted copy as borg archived it must pass: %v", c.Problems)
	}
	g := group(t, c, sources.GroupCouchDB)
	for _, want := range []string{"1 file and 800 B fewer than counted when the backup began", "database old-db was deleted while the backup ran", "_nodes.couch.compact.data was there when the backup began"} {
		if !strings.Contains(g.Line, want) {
			t.Errorf("couchdb line lacks %q: %s", want, g.Line)
		}
	}
	if g := group(t, c, sources.GroupIndexes); !strings.Contains(g.Line, "270 B fewer than counted") {
		t.Errorf("indexes line: %s", g.Line)
	}
}

// A file CouchDB created at the top of its data directory while borg read (a node-local database)
// is in no path counted when the backup began, but it is in the archive: the copy must hold it.
func TestCheckJudgesFilesNewAtTheTopOfTheDataDirectory(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	if err := os.WriteFile(filepath.Join(root, "h/cht/couchdb/_nodes.couch"), []byte("nodes"), 0o644); err != nil {
		t.Fatal(err)
	}
	items := archivedItems(t, root)
	c := check(t, root, m, items)
	g := group(t, c, sources.GroupCouchDB)
	if !c.OK || g.Archived.Files != 4 || !strings.Contains(g.Line, "1 file and 5 B more than counted") {
		t.Fatalf("a new file in the copy as archived must pass and be counted: %+v %v", g, c.Problems)
	}
	if gi := group(t, c, sources.GroupIndexes); gi.Archived.Files != 1 {
		t.Errorf("the indexes group counts %d archived files, want its 1 (.shards is its own)", gi.Archived.Files)
	}
	os.Remove(filepath.Join(root, "h/cht/couchdb/_nodes.couch"))
	c = check(t, root, m, items)
	if c.OK || !strings.Contains(strings.Join(c.Problems, "\n"), "h/cht/couchdb/_nodes.couch is missing from the restored copy") {
		t.Fatalf("an archived file missing from the copy must fail, got %v", c.Problems)
	}
}

// The archive itself lacks some of a database's shard files (not all: that is a deletion).
func TestCheckFailsADatabaseMissingSomeShardsInTheArchive(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	m.CouchDB.Databases[1].ShardFiles = 2
	c := check(t, root, m, nil)
	if c.OK || !strings.Contains(strings.Join(c.Problems, "\n"), "database medic has 1 of its 2 shard files in the archive") {
		t.Fatalf("want a failure naming medic, got %v", c.Problems)
	}
}

// Without borg's item list CouchDB's files cannot be judged: a failure, never a silent pass.
func TestCheckWithoutItemListFails(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	c := Check(context.Background(), m, nil, func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) })
	if c.OK || !strings.Contains(strings.Join(c.Problems, "\n"), "item list") {
		t.Fatalf("want a failure about the item list, got %v", c.Problems)
	}
}

func TestCheckFailures(t *testing.T) {
	tests := []struct {
		name   string
		damage func(root string)
		group  string
		want   string
	}{
		{"lost shard file", func(r string) { os.Remove(filepath.Join(r, "h/cht/couchdb/shards/00-ff/_users.2.couch")) }, sources.GroupCouchDB, "database _users has 0 of its 1 shard files"},
		{"shard file cut short", func(r string) { os.Truncate(filepath.Join(r, "h/cht/couchdb/shards/00-ff/medic.1.couch"), 10) }, sources.GroupCouchDB,
			"h/cht/couchdb/shards/00-ff/medic.1.couch holds 990 B fewer than counted in the archive (cut short)"},
		{"shard file longer than archived", func(r string) {
			f, _ := os.OpenFile(filepath.Join(r, "h/cht/couchdb/shards/00-ff/_users.2.couch"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("12345"))
			f.Close()
		}, sources.GroupCouchDB, "h/cht/couchdb/shards/00-ff/_users.2.couch holds 5 B more than borg archived"},
		{"lost view index", func(r string) { os.RemoveAll(filepath.Join(r, "h/cht/couchdb/.shards/00-ff")) }, sources.GroupIndexes, "view index files"},
		{"lost empty directory", func(r string) { os.Remove(filepath.Join(r, "h/cht/couchdb/.delete")) }, sources.GroupCouchDB, "h/cht/couchdb/.delete is missing"},
		{"changed .env", func(r string) {
			os.WriteFile(filepath.Join(r, "h/cht/upgrade-service/.env"), []byte("COUCHDB_PASSWORD=y\n"), 0o600)
		}, sources.GroupEnv, "sha256 mismatch"},
		{"lost certificate", func(r string) { os.Remove(filepath.Join(r, "cht-backup/containers/nginx/etc/nginx/private/cert.pem")) }, sources.GroupTLS, "cert.pem is missing"},
		{"extra tls file", func(r string) {
			os.WriteFile(filepath.Join(r, "cht-backup/containers/nginx/etc/nginx/private/x"), nil, 0o600)
		}, sources.GroupTLS, "3 files where the backup had 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			m := copyTree(t, root)
			items := archivedItems(t, root)
			tt.damage(root)
			c := check(t, root, m, items)
			g := group(t, c, tt.group)
			if c.OK || g.OK || !strings.Contains(g.Line, tt.want) || !strings.Contains(strings.Join(c.Problems, "\n"), tt.want) {
				t.Fatalf("want a failure naming %q, got %+v (problems %v)", tt.want, g, c.Problems)
			}
			if strings.Contains(g.Line, "COUCHDB_PASSWORD") {
				t.Fatal("a check line must never show file contents")
			}
		})
	}
}

// An archive whose .env is a symlink (made before backup archived a link's content) holds none
// of the secrets: the comparison fails and says so, even though the counts would agree.
func TestCheckFailsOnASymlinkedEnv(t *testing.T) {
	root := t.TempDir()
	m := copyTree(t, root)
	env := filepath.Join(root, "h/cht/upgrade-service/.env")
	os.Remove(env)
	if err := os.Symlink("/etc/cht/real.env", env); err != nil {
		t.Fatal(err)
	}
	delete(m.SHA256, "h/cht/upgrade-service/.env")
	m.Group(sources.GroupEnv).Bytes = 0
	res := check(t, root, m, nil)
	if res.OK || !strings.Contains(strings.Join(res.Problems, "\n"), "is a symlink, not the .env file") {
		t.Fatalf("a symlinked .env must fail the comparison: %+v", res.Problems)
	}
}

// A file lost from the restored copy outside the shard files (a nouveau search index, a database
// CouchDB had set aside under .delete/) belongs to no database, so only the comparison with
// borg's item list can notice it: it must.
func TestCheckFailsAFileLostOutsideTheShards(t *testing.T) {
	for _, rel := range []string{
		"h/cht/couchdb/nouveau/medic/00-ff/segments_1",
		"h/cht/couchdb/.delete/20261201.094500.medic.1.couch",
	} {
		t.Run(filepath.Base(filepath.Dir(rel)), func(t *testing.T) {
			root := t.TempDir()
			m := copyTree(t, root)
			full := filepath.Join(root, rel)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte("index or set-aside data"), 0o644); err != nil {
				t.Fatal(err)
			}
			for i := range m.Groups {
				if m.Groups[i].Name == sources.GroupCouchDB {
					m.Groups[i].Paths = append(m.Groups[i].Paths, "h/cht/couchdb/nouveau")
				}
			}
			items := archivedItems(t, root)
			if c := check(t, root, m, items); !c.OK {
				t.Fatalf("the intact copy must pass: %v", c.Problems)
			}
			os.Remove(full)
			c := check(t, root, m, items)
			if g := group(t, c, sources.GroupCouchDB); c.OK || g.OK || !strings.Contains(strings.Join(g.Problems, "\n"), rel+" is missing") {
				t.Fatalf("want a failure naming %s, got %+v", rel, g)
			}
		})
	}
}

// Archived items missing from the restored copy: the first five are named, the rest counted, so a
// copy that lost thousands of files still gives a readable report.
func TestCheckNamesFiveMissingItemsAndCountsTheRest(t *testing.T) {
	for _, tt := range []struct {
		lost  int
		named int
		more  string
	}{{1, 1, ""}, {5, 5, ""}, {6, 5, "1 more archived items are missing"}, {8, 5, "3 more archived items are missing"}} {
		root := t.TempDir()
		m := copyTree(t, root)
		items := archivedItems(t, root)
		for i := 0; i < tt.lost; i++ {
			items = append(items, borg.Item{Path: fmt.Sprintf("h/cht/couchdb/.delete/gone-%d", i), Type: "d"})
		}
		g := group(t, check(t, root, m, items), sources.GroupCouchDB)
		named, more := 0, []string{}
		for _, p := range g.Problems {
			if strings.HasSuffix(p, "is missing from the restored copy") {
				named++
			}
			if strings.Contains(p, "more archived items are missing") {
				more = append(more, p)
			}
		}
		if g.OK || named != tt.named || (tt.more == "" && len(more) != 0) || (tt.more != "" && (len(more) != 1 || !strings.HasPrefix(more[0], tt.more))) {
			t.Errorf("%d lost: %d named, summary %q; want %d named and %q (problems %q)", tt.lost, named, more, tt.named, tt.more, g.Problems)
		}
	}
}
