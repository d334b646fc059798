package sources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestInventoryCouchDB(t *testing.T) {
	data := t.TempDir()
	files := []string{
		"_dbs.couch", "_nodes.couch",
		"shards/00000000-7fffffff/medic.1700000000.couch",
		"shards/80000000-ffffffff/medic.1700000000.couch",
		"shards/00000000-7fffffff/_users.1700000001.couch",
		// Database names may hold "/": CouchDB keeps them as directories.
		"shards/00000000-7fffffff/account/team-a.1700000002.couch",
		"shards/00000000-7fffffff/stray.txt",
		".shards/00000000-7fffffff/medic.1700000000_design/mrview/abc.view",
		".shards/80000000-ffffffff/medic.1700000000_design/mrview/abc.view",
		// A view index left from an earlier shard layout: its range is no shard range.
		".shards/c0000000-ffffffff/medic.1600000000_design/mrview/old.view",
		"nouveau/medic/x.idx",
	}
	for _, f := range files {
		p := filepath.Join(data, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("12345"), 0o644)
	}
	os.Chmod(data, 0o750)
	inv, err := InventoryCouchDB(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inv.ShardRanges, ","); got != "00000000-7fffffff,80000000-ffffffff" {
		t.Errorf("ranges %s", got)
	}
	if got := strings.Join(inv.RootEntries, ","); got != ".shards,_dbs.couch,_nodes.couch,nouveau,shards" {
		t.Errorf("root entries %s", got)
	}
	want := []Database{
		{Name: "_users", ShardFiles: 1, Bytes: 5},
		{Name: "account/team-a", ShardFiles: 1, Bytes: 5},
		{Name: "medic", ShardFiles: 2, Bytes: 10, ViewIndexFiles: 3, ViewIndexBytes: 15},
	}
	if len(inv.Databases) != len(want) {
		t.Fatalf("databases %+v", inv.Databases)
	}
	for i := range want {
		if inv.Databases[i] != want[i] {
			t.Errorf("db %d: %+v, want %+v", i, inv.Databases[i], want[i])
		}
	}
	st, _ := os.Stat(data)
	if inv.DataDir.Mode != "0750" || inv.DataDir.UID != int(st.Sys().(*syscall.Stat_t).Uid) {
		t.Errorf("data dir %+v", inv.DataDir)
	}
	if m, err := inv.DataDir.FileMode(); err != nil || m != 0o750 {
		t.Errorf("FileMode %v %v", m, err)
	}
}

func TestCHTVersion(t *testing.T) {
	tests := []struct {
		name    string
		compose string
		images  []string
		want    string
	}{
		{"api tag", "services:\n  api:\n    image: public.ecr.aws/medic/cht-api:4.21.0\n", nil, "4.21.0"},
		{"api wins over nginx", "image: medic/cht-nginx:4.1.0\nimage: \"medic/cht-api:4.2.0-beta.1\"\n", nil, "4.2.0-beta.1"},
		{"bare image name", "image: cht-sentinel:5.0.1\n", nil, "5.0.1"},
		{"variable tag ignored", "image: medic/cht-api:${CHT_VERSION}\n", nil, ""},
		{"upgrade service is not CHT", "image: public.ecr.aws/medic/cht-upgrade-service:1.2.3\n", nil, ""},
		{"not an image line", "# cht-api:9.9.9 was the old one\n", nil, ""},
		{"from containers", "services: {}\n", []string{"public.ecr.aws/medic/cht-couchdb:4.9.0"}, "4.9.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yml")
			os.WriteFile(p, []byte(tt.compose), 0o644)
			if got := chtVersion([]string{p}, tt.images); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadManifest(t *testing.T) {
	dir := t.TempDir()
	m := &Manifest{FormatVersion: ManifestFormatVersion, Hostname: "h", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), SHA256: map[string]string{"a": "b"}}
	p := filepath.Join(dir, "ok.json")
	if err := m.write(p); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := m.write(p); err == nil {
		t.Error("write over an existing manifest should fail")
	}
	got, err := ReadManifest(p)
	if err != nil || got.Hostname != "h" || !got.Created.Equal(m.Created) || got.SHA256["a"] != "b" {
		t.Fatalf("read back %+v, %v", got, err)
	}
	for name, body := range map[string]string{
		"newer":   `{"format_version": 99}`,
		"foreign": `{"name": "x"}`,
		"broken":  `{"format_version": 1`,
	} {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := ReadManifest(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: want an error naming the file, got %v", name, err)
		}
	}
}

func TestStaging(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	state := filepath.Join(t.TempDir(), "state")
	s, err := NewStaging(state, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(state, "staging"), s.Dir, s.Root()} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (%v), want 0700", d, fi.Mode(), err)
		}
	}
	if _, err := NewStaging(state, filepath.Base(s.Dir)); err == nil {
		t.Error("a second staging with the same run id should fail")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("%s not removed", s.Dir)
	}
	// A read-only directory copied from a container does not stop Close.
	ro, _ := NewStaging(state, "read-only")
	os.MkdirAll(filepath.Join(ro.Root(), "containers", "x"), 0o700)
	os.WriteFile(filepath.Join(ro.Root(), "containers", "x", "f"), nil, 0o400)
	os.Chmod(filepath.Join(ro.Root(), "containers", "x"), 0o500)
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	var g *Gathered
	if err := g.Close(); err != nil {
		t.Error(err)
	}

	stale, _ := NewStaging(state, "stale-run")
	os.WriteFile(filepath.Join(stale.Root(), ManifestName), []byte("{}"), 0o600)
	removed, err := RemoveStaleStaging(state)
	if err != nil || len(removed) != 1 || removed[0] != stale.Dir {
		t.Errorf("RemoveStaleStaging: %v, %v", removed, err)
	}
}

// A file that was a symlink at backup time is read back from its staged copy; any other file
// from where it was archived.
func TestResolvedCopy(t *testing.T) {
	m := &Manifest{Resolved: []ResolvedFile{{Path: "h/cht/upgrade-service/.env", Copy: "cht-backup/resolved/1"}, {Path: "h/cht/compose/a.yml", Copy: "cht-backup/resolved/2"}}}
	for p, want := range map[string]string{
		"h/cht/upgrade-service/.env": "cht-backup/resolved/1",
		"h/cht/compose/a.yml":        "cht-backup/resolved/2",
		"h/cht/compose/b.yml":        "h/cht/compose/b.yml",
	} {
		if got := m.ResolvedCopy(p); got != want {
			t.Errorf("ResolvedCopy(%s) = %s, want %s", p, got, want)
		}
	}
}

// A group of files in several directories is rooted at their deepest common directory.
func TestCommonRoot(t *testing.T) {
	for _, tt := range []struct {
		paths []string
		want  string
	}{
		{nil, ""},
		{[]string{"h/cht/compose/a.yml"}, "h/cht/compose/a.yml"},
		{[]string{"h/cht/compose/a.yml", "h/cht/compose/b.yml"}, "h/cht/compose"},
		{[]string{"h/cht/compose/a.yml", "h/cht/upgrade-service/docker-compose.yml"}, "h/cht"},
		{[]string{"h/cht", "h/cht/compose/a.yml"}, "h/cht"},
		{[]string{"h/chtx/a", "h/cht/b"}, "h"},
		{[]string{"/srv/a", "/opt/b"}, "/"},
		{[]string{"srv/a", "opt/b"}, "."},
	} {
		if got := commonRoot(tt.paths); got != tt.want {
			t.Errorf("commonRoot(%q) = %q, want %q", tt.paths, got, tt.want)
		}
	}
}
