//go:build !mutation

package sources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// These tests run real containers under dockerd (and the real CouchDB image). The mutation run
// (scripts/mutation.sh builds with -tags mutation) leaves them out: starting containers for every
// mutant would take hours on two cores. The test command builds without the tag and runs them.

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

func TestGatherMissingContainer(t *testing.T) {
	ctx := context.Background()
	for _, svc := range []string{ServiceNginx, ServiceCouchDB} {
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			cs := sourcestest.StartContainers(t, ctx, "", sourcestest.LabelsOnly)
			tc, part := cs.Nginx, "tls"
			if svc == ServiceCouchDB {
				tc, part = cs.CouchDB, "credentials"
			}
			cs.Remove(t, tc)
			tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project = cs.Project })
			state := t.TempDir()
			o := gatherOpts(tree, state)
			o.Docker = cs.Client
			g, err := Gather(ctx, o)
			if err != nil {
				t.Fatalf("a missing container must not stop the backup of the rest: %v", err)
			}
			defer func() { g.Close(); assertNoStaging(t, state) }()
			if len(g.Missing) != 1 {
				t.Fatalf("missing: %q", g.Missing)
			}
			assertOneLine(t, errors.New(g.Missing[0]), part+": ", "no container found for the "+svc+" service", `"`+cs.Project+`"`,
				"com.docker.compose.project="+cs.Project, cs.Project+"_"+svc+"_1", cs.Project+"-"+svc+"-1", "docker ps -a")
			assertNoSecret(t, tree, g.Missing[0])
			other := GroupTLS
			if part == PartTLS {
				other = GroupCredentials
			}
			if g.Manifest.Group(other) == nil || g.Manifest.Group(GroupCouchDB) == nil || g.Manifest.Group(GroupEnv) == nil {
				t.Errorf("the parts that could be gathered were not: %+v", g.Manifest.Groups)
			}
			if len(g.Manifest.Missing) != 1 || g.Manifest.Missing[0].Part != part {
				t.Errorf("manifest missing: %+v", g.Manifest.Missing)
			}
		})
	}
}

func TestFindContainerPrefersLabels(t *testing.T) {
	ctx := context.Background()
	labelled := sourcestest.StartContainers(t, ctx, "", sourcestest.LabelsOnly)
	named := sourcestest.StartContainers(t, ctx, labelled.Project, sourcestest.NamesV2)
	c, err := FindContainer(ctx, labelled.Client, labelled.Project, ServiceNginx)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != labelled.Nginx.ID || c.FoundBy != "labels" {
		t.Errorf("found %+v, want the labelled %s", c, labelled.Nginx.Name)
	}
	named.Remove(t, named.Nginx)
	labelled.Stop(t, ctx)
	c, err = FindContainer(ctx, labelled.Client, labelled.Project, ServiceNginx)
	if err != nil || c.ID != labelled.Nginx.ID || c.State != "exited" {
		t.Errorf("stopped labelled container: %+v, %v", c, err)
	}
}

func TestGatherCancelled(t *testing.T) {
	ctx := context.Background()
	cs := sourcestest.StartContainers(t, ctx, "", sourcestest.NamesV1)
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.Project = cs.Project })
	state := t.TempDir()
	o := gatherOpts(tree, state)
	o.Docker = cs.Client
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := Gather(cctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	assertNoStaging(t, state)
}

func TestNewDockerClient(t *testing.T) {
	sourcestest.DockerClient(t) // skips when not root
	cli, err := NewDockerClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "nope.sock"))
	_, err = NewDockerClient(context.Background())
	assertOneLine(t, err, "cannot reach the Docker engine", "dockerd")
}

func TestCopyFromContainerMissingDir(t *testing.T) {
	ctx := context.Background()
	cs := sourcestest.StartContainers(t, ctx, "", sourcestest.LabelsOnly)
	c, err := FindContainer(ctx, cs.Client, cs.Project, ServiceNginx)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "out")
	err = CopyFromContainer(ctx, cs.Client, c, "/etc/nginx/nothere/", dest)
	assertOneLine(t, err, "/etc/nginx/nothere/", "missing", c.Name)
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("%s created for a missing directory", dest)
	}
	// An empty directory copies as an empty directory.
	if err := CopyFromContainer(ctx, cs.Client, c, "/tmp/", dest); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dest); err != nil || len(entries) != 0 {
		t.Errorf("copy of an empty dir holds %v (%v)", entries, err)
	}
}
