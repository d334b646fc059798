package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// assertNoStaging fails when a failed Gather left a staging directory.
func assertNoStaging(t *testing.T, state string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(state, "staging"))
	if len(entries) != 0 {
		t.Errorf("a failed Gather left %d staging directories behind", len(entries))
	}
}

func assertOneLine(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q lacks %q", msg, w)
		}
	}
}

func TestGatherSkipContainersWithoutDocker(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.NoSecretAndUUID = true })
	o := gatherOpts(tree, t.TempDir())
	o.Skip = []string{"tls", "credentials"}
	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if len(g.Skipped) != 2 || !strings.HasPrefix(g.Skipped[0], "tls: skipped") || !strings.HasPrefix(g.Skipped[1], "credentials: skipped") {
		t.Fatalf("Skipped %q", g.Skipped)
	}
	// Without COUCHDB_SECRET/COUCHDB_UUID in .env, skipping credentials loses them: say so.
	if !strings.Contains(g.Skipped[1], "lacks COUCHDB_SECRET or COUCHDB_UUID") {
		t.Errorf("credentials reason %q does not warn about the missing secret", g.Skipped[1])
	}
	if g.Manifest.Group(GroupTLS) != nil || g.Manifest.Group(GroupCredentials) != nil || len(g.Manifest.Skipped) != 2 {
		t.Errorf("manifest groups %v skipped %v", g.Manifest.Groups, g.Manifest.Skipped)
	}
	entries, _ := os.ReadDir(filepath.Join(g.WorkDir, StagingName))
	if len(entries) != 1 || entries[0].Name() != ManifestName {
		t.Errorf("staging holds %v, want only the manifest", entries)
	}
	if g.Paths[len(g.Paths)-1] != StagingName || g.Manifest.CHTVersion != "4.21.0" {
		t.Errorf("paths %q, cht version %q", g.Paths, g.Manifest.CHTVersion)
	}
	// What restore reads back: the archive paths, the compose files and the .env keys.
	m := g.Manifest
	if len(m.ArchivePaths) != len(g.Paths) || m.ArchivePaths[0] != strings.TrimPrefix(tree.CouchDBData, "/")+"/.shards" || m.ArchivePaths[len(m.ArchivePaths)-1] != StagingName {
		t.Errorf("archive paths %q", m.ArchivePaths)
	}
	if !reflect.DeepEqual(m.Sources.ComposeFiles, tree.ComposeFiles) || !slices.Contains(m.EnvKeys, "COUCHDB_PASSWORD") {
		t.Errorf("compose files %q (want %q), env keys %q", m.Sources.ComposeFiles, tree.ComposeFiles, m.EnvKeys)
	}
	// Each group counts what a walk of its paths finds.
	for _, grp := range m.Groups {
		var files, dirs int64
		for _, p := range grp.Paths {
			filepath.WalkDir("/"+p, func(_ string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				if d.IsDir() {
					dirs++
				} else {
					files++
				}
				return nil
			})
		}
		if grp.Files != files || grp.Dirs != dirs || (grp.Name == GroupCouchDB && dirs == 0) {
			t.Errorf("group %s counts %d files and %d directories; its paths hold %d and %d", grp.Name, grp.Files, grp.Dirs, files, dirs)
		}
	}
	// The manifest names the host given, and says why CouchDB was not asked for its figures.
	if g.Manifest.Hostname != "chthost" {
		t.Errorf("manifest hostname %q, want the one given", g.Manifest.Hostname)
	}
	if live := g.Manifest.CouchDBLive; live == nil || live.NotAsked != "Docker is not used by this backup" {
		t.Errorf("live CouchDB %+v, want it not asked since Docker is not used", live)
	}
}

func TestGatherSkipCompose(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	o := gatherOpts(tree, t.TempDir())
	o.Skip = []string{"TLS", " credentials", "compose"}
	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, p := range g.Paths {
		if strings.HasSuffix(p, ".yml") {
			t.Errorf("compose file %s archived though skipped", p)
		}
	}
	if len(g.Skipped) != 3 || g.Manifest.Group(GroupCompose) != nil || g.Manifest.CHTVersion != "" {
		t.Errorf("skipped %q, compose group %v, version %q", g.Skipped, g.Manifest.Group(GroupCompose), g.Manifest.CHTVersion)
	}
}

func TestGatherOptionErrors(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Skip = []string{"tls", "couchdb"}
	_, err := Gather(context.Background(), o)
	assertOneLine(t, err, `"couchdb"`, "tls, credentials, compose")

	assertNoStaging(t, state)
}

// Without Docker the container parts are missing, said why, and the rest is still gathered: the
// archive is partial, not abandoned.
func TestGatherWithoutDockerIsPartial(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Skip = []string{"tls"}
	o.DockerErr = errors.New("cannot reach the Docker engine: connection refused")
	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatalf("no Docker must not stop the backup of CouchDB, .env and compose: %v", err)
	}
	defer g.Close()
	if len(g.Missing) != 1 || !strings.Contains(g.Missing[0], "credentials") || !strings.Contains(g.Missing[0], "connection refused") {
		t.Fatalf("missing: %q", g.Missing)
	}
	if len(g.Manifest.Missing) != 1 || g.Manifest.Missing[0].Part != PartCredentials {
		t.Fatalf("manifest missing: %+v", g.Manifest.Missing)
	}
	for _, grp := range []string{GroupCouchDB, GroupEnv, GroupCompose} {
		if g.Manifest.Group(grp) == nil {
			t.Errorf("group %s not gathered", grp)
		}
	}
	if g.Manifest.Group(GroupCredentials) != nil {
		t.Error("a credentials group without the files")
	}
	if _, err := os.Stat(filepath.Join(g.WorkDir, StagingName, "containers")); !os.IsNotExist(err) {
		t.Errorf("staging holds container files that were not gathered: %v", err)
	}
}

func TestGatherMissingEnv(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	os.Remove(tree.EnvFile)
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Skip = []string{"tls", "credentials"}
	_, err := Gather(context.Background(), o)
	assertOneLine(t, err, tree.EnvFile, "not found", "--cht-dir")
	assertNoStaging(t, state)
}

func TestGatherBadCouchDBData(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		tree := sourcestest.NewTree(t, t.TempDir())
		os.RemoveAll(tree.CouchDBData)
		state := t.TempDir()
		o := gatherOpts(tree, state)
		o.Skip = []string{"tls", "credentials"}
		_, err := Gather(context.Background(), o)
		assertOneLine(t, err, tree.CouchDBData, "COUCHDB_DATA", "does not exist")
		assertNoSecret(t, tree, err.Error())
		assertNoStaging(t, state)
	})
	t.Run("not CouchDB's", func(t *testing.T) {
		tree := sourcestest.NewTree(t, t.TempDir())
		os.RemoveAll(filepath.Join(tree.CouchDBData, "shards"))
		state := t.TempDir()
		o := gatherOpts(tree, state)
		o.Skip = []string{"tls", "credentials"}
		_, err := Gather(context.Background(), o)
		assertOneLine(t, err, tree.CouchDBData, "no shards/", "COUCHDB_DATA")
		assertNoStaging(t, state)
	})
}

func TestGatherNoComposeFiles(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	for _, f := range tree.ComposeFiles {
		os.Remove(f)
	}
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Skip = []string{"tls", "credentials"}
	_, err := Gather(context.Background(), o)
	assertOneLine(t, err, "no compose files", tree.ComposePath, "CHT_COMPOSE_PATH", "skip compose")
	assertNoStaging(t, state)
}

// A .env or compose file that is a symlink: borg would archive only the link, so its content is
// staged under cht-backup/resolved/ and the manifest says so; the env group is that copy.
func TestGatherStagesSymlinkedEnvAndCompose(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	elsewhere := t.TempDir()
	links := []string{tree.EnvFile, tree.ComposeFiles[0]}
	content := map[string][]byte{}
	for i, p := range links {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		content[p] = b
		real := filepath.Join(elsewhere, fmt.Sprintf("real-%d", i))
		if err := os.WriteFile(real, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		if err := os.Symlink(real, p); err != nil {
			t.Fatal(err)
		}
	}
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Skip = []string{"tls", "credentials"}
	g, err := Gather(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m := g.Manifest
	if len(m.Resolved) != 2 {
		t.Fatalf("resolved: %+v", m.Resolved)
	}
	for _, r := range m.Resolved {
		local := filepath.Join(g.WorkDir, filepath.FromSlash(r.Copy))
		got, err := os.ReadFile(local)
		if err != nil || !bytes.Equal(got, content["/"+r.Path]) {
			t.Errorf("staged copy of %s: %v", r.Path, err)
		}
		if fi, _ := os.Stat(local); fi == nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("staged copy of %s is not 0600", r.Path)
		}
		if m.SHA256[r.Copy] == "" {
			t.Errorf("no checksum for %s", r.Copy)
		}
	}
	env := m.Group(GroupEnv)
	if env == nil || !strings.HasPrefix(env.Root, StagingName+"/"+ResolvedDir+"/") || env.Bytes != int64(len(content[tree.EnvFile])) {
		t.Fatalf("the env group must be the staged content: %+v", env)
	}
	if m.ResolvedCopy(strings.TrimPrefix(tree.ComposeFiles[0], "/")) == strings.TrimPrefix(tree.ComposeFiles[0], "/") {
		t.Error("the symlinked compose file has no copy")
	}

	// A link that leads nowhere cannot be archived: say so, leave nothing behind.
	os.Remove(tree.EnvFile)
	os.Symlink(filepath.Join(elsewhere, "gone"), tree.EnvFile)
	state2 := t.TempDir()
	_, err = Gather(context.Background(), gatherOpts2(tree, state2))
	if err == nil {
		t.Fatal("a dangling .env link must fail")
	}
	assertNoStaging(t, state2)
}

func gatherOpts2(tree *sourcestest.Tree, state string) GatherOptions {
	o := gatherOpts(tree, state)
	o.Skip = []string{"tls", "credentials"}
	return o
}

func gatherOpts(tree *sourcestest.Tree, state string) GatherOptions {
	return GatherOptions{
		ChtDir:      tree.Root,
		StateDir:    state,
		ToolVersion: "test-1.2.3",
		BorgVersion: "1.2.4",
		Hostname:    "chthost",
		Now:         time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("EAT", 3*3600)),
	}
}
