//go:build !mutation

package sources

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func TestGatherEachNamingEra(t *testing.T) {
	for _, naming := range []sourcestest.Naming{sourcestest.LabelsOnly, sourcestest.NamesV1, sourcestest.NamesV2} {
		t.Run(naming.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cs := sourcestest.StartContainers(t, ctx, "", naming)
			tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project = cs.Project })
			o := gatherOpts(tree, t.TempDir())
			o.Docker = cs.Client
			g, err := Gather(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			wantBy := map[sourcestest.Naming]string{sourcestest.LabelsOnly: "labels", sourcestest.NamesV1: "name", sourcestest.NamesV2: "name"}[naming]
			for svc, want := range map[string]sourcestest.TestContainer{ServiceNginx: cs.Nginx, ServiceCouchDB: cs.CouchDB} {
				got := g.Containers[svc]
				if got.ID != want.ID || got.FoundBy != wantBy {
					t.Errorf("%s: found %+v, want id %s by %s", svc, got, want.ID, wantBy)
				}
			}
			checkGathered(t, tree, cs, g)
		})
	}
}

func TestGatherStoppedContainers(t *testing.T) {
	ctx := context.Background()
	cs := sourcestest.StartContainers(t, ctx, "", sourcestest.LabelsOnly)
	cs.Stop(t, ctx)
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project = cs.Project; o.Nouveau = true })
	o := gatherOpts(tree, t.TempDir())
	o.Docker = cs.Client
	g, err := Gather(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if st := g.Containers[ServiceNginx].State; st != "exited" {
		t.Errorf("nginx state %q, want exited", st)
	}
	checkGathered(t, tree, cs, g)
}

// checkGathered pins down what every successful Gather promises.
func checkGathered(t *testing.T, tree *sourcestest.Tree, cs *sourcestest.Containers, g *Gathered) {
	t.Helper()
	data := tree.CouchDBData

	// Path order: .shards, shards, the rest of the data dir once each,
	// .env, compose files, staging; never the data dir itself.
	var want []string
	want = append(want, filepath.Join(data, ".shards"), filepath.Join(data, "shards"))
	entries, _ := os.ReadDir(data)
	for _, e := range entries {
		if e.Name() != ".shards" && e.Name() != "shards" {
			want = append(want, filepath.Join(data, e.Name()))
		}
	}
	want = append(want, tree.EnvFile)
	want = append(want, tree.ComposeFiles...)
	want = append(want, StagingName)
	if !slices.Equal(g.Paths, want) {
		t.Errorf("Paths\n got %q\nwant %q", g.Paths, want)
	}
	if slices.Contains(g.Paths, data) {
		t.Errorf("Paths holds the data dir itself")
	}
	for _, p := range g.Paths[:len(g.Paths)-1] {
		if !filepath.IsAbs(p) {
			t.Errorf("host path %s is not absolute", p)
		}
	}

	// Staging: 0700, only container files and the manifest, no couch file.
	if g.WorkDir != filepath.Dir(filepath.Dir(g.ManifestPath)) || filepath.Base(filepath.Dir(g.ManifestPath)) != StagingName {
		t.Errorf("manifest %s not at <WorkDir>/%s/", g.ManifestPath, StagingName)
	}
	fi, err := os.Stat(g.WorkDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("staging mode %v (%v), want 0700", fi.Mode(), err)
	}
	var staged []string
	filepath.WalkDir(filepath.Join(g.WorkDir, StagingName), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(g.WorkDir, p)
			staged = append(staged, rel)
		}
		if strings.HasSuffix(p, ".couch") || strings.HasSuffix(p, ".view") {
			t.Errorf("CouchDB file %s in staging", p)
		}
		return nil
	})
	wantStaged := []string{"cht-backup/manifest.json"}
	for _, p := range append(cs.ContainerNames(sourcestest.NginxPrivateDir), cs.ContainerNames(sourcestest.CouchDBLocalDDir)...) {
		svc := ServiceNginx
		if strings.HasPrefix(p, sourcestest.CouchDBLocalDDir) {
			svc = ServiceCouchDB
		}
		wantStaged = append(wantStaged, "cht-backup/containers/"+svc+p)
	}
	sort.Strings(wantStaged)
	if !slices.Equal(staged, wantStaged) {
		t.Errorf("staged\n got %q\nwant %q", staged, wantStaged)
	}
	// Container files byte-identical, modes kept, symlinks kept.
	for p, body := range cs.Files {
		svc := ServiceNginx
		if strings.HasPrefix(p, sourcestest.CouchDBLocalDDir) {
			svc = ServiceCouchDB
		}
		host := filepath.Join(g.WorkDir, StagingName, "containers", svc, p)
		got, err := os.ReadFile(host)
		if err != nil || string(got) != string(body) {
			t.Errorf("%s differs from the container's %s (%v)", host, p, err)
		}
		if fi, _ := os.Stat(host); fi == nil || fi.Mode().Perm() != cs.Modes[p] {
			t.Errorf("%s mode %v, want %v", host, fi.Mode(), cs.Modes[p])
		}
	}
	for p, target := range cs.Symlinks {
		host := filepath.Join(g.WorkDir, StagingName, "containers", ServiceNginx, p)
		if got, err := os.Readlink(host); err != nil || got != target {
			t.Errorf("symlink %s -> %q (%v), want %q", host, got, err, target)
		}
	}
	ini := filepath.Join(g.WorkDir, StagingName, "containers/couchdb/opt/couchdb/etc/local.d/cluster-credentials.ini")
	if fi, err := os.Stat(ini); err == nil && fi.Sys().(*syscall.Stat_t).Uid != sourcestest.CouchDBUID && os.Geteuid() == 0 {
		t.Errorf("cluster-credentials.ini owner %d, want %d", fi.Sys().(*syscall.Stat_t).Uid, sourcestest.CouchDBUID)
	}
	mfi, err := os.Stat(g.ManifestPath)
	if err != nil || mfi.Mode().Perm() != 0o600 {
		t.Errorf("manifest mode %v (%v), want 0600", mfi.Mode(), err)
	}

	checkManifest(t, tree, g)

	// Close removes staging, and may be called again.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.WorkDir); !os.IsNotExist(err) {
		t.Errorf("staging %s still there after Close (%v)", g.WorkDir, err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func checkManifest(t *testing.T, tree *sourcestest.Tree, g *Gathered) {
	t.Helper()
	raw, err := os.ReadFile(g.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, tree, string(raw))
	m, err := ReadManifest(g.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if back, _ := json.Marshal(m); !json.Valid(back) {
		t.Fatal("manifest does not marshal back")
	}
	if m.FormatVersion != ManifestFormatVersion || m.ToolVersion != "test-1.2.3" || m.BorgVersion != "1.2.4" || m.Hostname != "chthost" {
		t.Errorf("header %+v", m)
	}
	if want := time.Date(2026, 3, 4, 2, 6, 7, 0, time.UTC); !m.Created.Equal(want) || m.Created.Location() != time.UTC {
		t.Errorf("created %v, want %v UTC", m.Created, want)
	}
	if !strings.Contains(string(raw), `"created": "2026-03-04T02:06:07Z"`) {
		t.Errorf("created is not RFC 3339 UTC in %s", raw)
	}
	if m.CHTVersion != tree.CHTVersion || m.ProjectName != tree.Project {
		t.Errorf("cht version %q project %q", m.CHTVersion, m.ProjectName)
	}
	if m.Sources.CouchDBData != tree.CouchDBData || m.Sources.EnvFile != tree.EnvFile || m.Sources.CHTDir != tree.Root || m.Sources.ComposePath != tree.ComposePath {
		t.Errorf("sources %+v", m.Sources)
	}
	if len(m.ArchivePaths) != len(g.Paths) || m.ArchivePaths[0] != strings.TrimPrefix(tree.CouchDBData, "/")+"/.shards" || m.ArchivePaths[len(m.ArchivePaths)-1] != StagingName {
		t.Errorf("archive paths %q", m.ArchivePaths)
	}

	// sha256 for every small file, keyed by archive path, matching the files.
	var small []string
	small = append(small, tree.EnvFile)
	small = append(small, tree.ComposeFiles...)
	want := map[string]string{}
	for _, p := range small {
		want[strings.TrimPrefix(p, "/")] = sha(t, p)
	}
	filepath.WalkDir(filepath.Join(g.WorkDir, StagingName, "containers"), func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(g.WorkDir, p)
			want[rel] = sha(t, p)
		}
		return nil
	})
	if len(m.SHA256) != len(want) {
		t.Errorf("sha256 has %d entries, want %d: %v", len(m.SHA256), len(want), m.SHA256)
	}
	for k, v := range want {
		if m.SHA256[k] != v {
			t.Errorf("sha256[%s] = %q, want %q", k, m.SHA256[k], v)
		}
	}
	for k := range m.SHA256 {
		if strings.HasSuffix(k, ".couch") || strings.HasSuffix(k, ".view") {
			t.Errorf("couch file %s hashed", k)
		}
	}

	// Groups count like find/du.
	count := func(paths ...string) (files, dirs, bytes int64) {
		for _, root := range paths {
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if d.IsDir() {
					dirs++
					return nil
				}
				files++
				if fi, _ := d.Info(); d.Type().IsRegular() {
					bytes += fi.Size()
				}
				return nil
			})
		}
		return
	}
	var couchItems []string
	for _, p := range g.Paths {
		if strings.HasPrefix(p, tree.CouchDBData+"/") && p != filepath.Join(tree.CouchDBData, ".shards") {
			couchItems = append(couchItems, p)
		}
	}
	groups := map[string][]string{
		GroupIndexes:     {filepath.Join(tree.CouchDBData, ".shards")},
		GroupCouchDB:     couchItems,
		GroupEnv:         {tree.EnvFile},
		GroupCompose:     tree.ComposeFiles,
		GroupTLS:         {filepath.Join(g.WorkDir, StagingName, "containers/nginx/etc/nginx/private")},
		GroupCredentials: {filepath.Join(g.WorkDir, StagingName, "containers/couchdb/opt/couchdb/etc/local.d")},
	}
	if len(m.Groups) != len(groups) {
		t.Errorf("%d groups, want %d", len(m.Groups), len(groups))
	}
	for name, paths := range groups {
		grp := m.Group(name)
		if grp == nil {
			t.Errorf("no group %s", name)
			continue
		}
		f, d, b := count(paths...)
		if grp.Files != f || grp.Dirs != d || grp.Bytes != b {
			t.Errorf("group %s: files %d dirs %d bytes %d, want %d %d %d", name, grp.Files, grp.Dirs, grp.Bytes, f, d, b)
		}
		if len(grp.Paths) != len(paths) {
			t.Errorf("group %s paths %q", name, grp.Paths)
		}
	}
	if r := m.Group(GroupCouchDB).Root; r != strings.TrimPrefix(tree.CouchDBData, "/") {
		t.Errorf("couchdb root %q", r)
	}
	if r := m.Group(GroupTLS).Root; r != "cht-backup/containers/nginx/etc/nginx/private" {
		t.Errorf("tls root %q", r)
	}
	if r := m.Group(GroupCompose).Root; r != strings.TrimPrefix(tree.Root, "/") {
		t.Errorf("compose root %q", r)
	}
	if f := m.Group(GroupCouchDB).Files + m.Group(GroupIndexes).Files; f != int64(len(tree.CouchFiles)+len(tree.ViewFiles)) {
		t.Errorf("couch files counted %d, tree has %d", f, len(tree.CouchFiles)+len(tree.ViewFiles))
	}

	// CouchDB inventory.
	if !slices.Equal(m.CouchDB.ShardRanges, tree.ShardRanges) {
		t.Errorf("ranges %q, want %q", m.CouchDB.ShardRanges, tree.ShardRanges)
	}
	var names []string
	for _, d := range m.CouchDB.Databases {
		names = append(names, d.Name)
		if d.ShardFiles != len(tree.ShardRanges) {
			t.Errorf("db %s: %d shard files", d.Name, d.ShardFiles)
		}
		if (d.Name == "medic") != (d.ViewIndexFiles == len(tree.ShardRanges)) {
			t.Errorf("db %s: %d view index files", d.Name, d.ViewIndexFiles)
		}
	}
	wantNames := slices.Clone(tree.Databases)
	sort.Strings(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("databases %q, want %q", names, wantNames)
	}
	if os.Geteuid() == 0 && (m.CouchDB.DataDir.UID != sourcestest.CouchDBUID || m.CouchDB.DataDir.Mode != "0755") {
		t.Errorf("data dir %+v", m.CouchDB.DataDir)
	}
	if !slices.Contains(m.CouchDB.RootEntries, "_dbs.couch") || !slices.Contains(m.CouchDB.RootEntries, ".delete") {
		t.Errorf("root entries %q", m.CouchDB.RootEntries)
	}
	if slices.Contains(m.EnvKeys, "COUCHDB_PASSWORD") == false {
		t.Errorf("env keys %q", m.EnvKeys)
	}
}

func sha(t *testing.T, p string) string {
	t.Helper()
	s, err := fileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
