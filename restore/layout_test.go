package restore

import (
	"reflect"
	"testing"

	"github.com/cht-backup/cht-backup/sources"
)

// manifestOf is the manifest a backup of a default CHT host writes (the parts layouts read).
func manifestOf(cht string) *sources.Manifest {
	return &sources.Manifest{
		FormatVersion: 1,
		Sources: sources.ManifestSources{
			CHTDir:      cht,
			CouchDBData: cht + "/couchdb",
			EnvFile:     cht + "/upgrade-service/.env",
			ComposePath: cht + "/compose",
			ComposeFiles: []string{cht + "/compose/cht-core.yml", cht + "/compose/cht-couchdb.yml",
				cht + "/upgrade-service/docker-compose.yml"},
		},
		Groups: []sources.Group{
			{Name: sources.GroupIndexes, Root: "home/ubuntu/cht/couchdb/.shards", Paths: []string{"home/ubuntu/cht/couchdb/.shards"}},
			{Name: sources.GroupCouchDB, Root: "home/ubuntu/cht/couchdb", Paths: []string{"home/ubuntu/cht/couchdb/shards", "home/ubuntu/cht/couchdb/_dbs.couch"}},
			{Name: sources.GroupEnv, Root: "home/ubuntu/cht/upgrade-service/.env", Paths: []string{"home/ubuntu/cht/upgrade-service/.env"}},
			{Name: sources.GroupTLS, Root: "cht-backup/containers/nginx/etc/nginx/private", Paths: []string{"cht-backup/containers/nginx/etc/nginx/private"}},
			{Name: sources.GroupCredentials, Root: "cht-backup/containers/couchdb/opt/couchdb/etc/local.d", Paths: []string{"cht-backup/containers/couchdb/opt/couchdb/etc/local.d"}},
		},
	}
}

func TestTargetLayout(t *testing.T) {
	got := TargetLayout(manifestOf("/home/ubuntu/cht"), "/r")
	want := []Placement{
		{GroupManifest, "cht-backup/manifest.json", "/r/manifest.json"},
		{sources.GroupCouchDB, "home/ubuntu/cht/couchdb", "/r/couchdb"},
		{sources.GroupEnv, "home/ubuntu/cht/upgrade-service/.env", "/r/upgrade-service/.env"},
		{sources.GroupCompose, "home/ubuntu/cht/compose/cht-core.yml", "/r/compose/cht-core.yml"},
		{sources.GroupCompose, "home/ubuntu/cht/compose/cht-couchdb.yml", "/r/compose/cht-couchdb.yml"},
		{sources.GroupCompose, "home/ubuntu/cht/upgrade-service/docker-compose.yml", "/r/upgrade-service/docker-compose.yml"},
		{sources.GroupTLS, "cht-backup/containers/nginx/etc/nginx/private", "/r/tls"},
		{sources.GroupCredentials, "cht-backup/containers/couchdb/opt/couchdb/etc/local.d", "/r/credentials"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layout\n got %+v\nwant %+v", got, want)
	}
}

func TestContainerPartsComeFromWhereBackupStagedThem(t *testing.T) {
	m := manifestOf("/home/ubuntu/cht")
	got := containerParts(m)
	want := []ContainerPart{
		{sources.GroupTLS, "nginx", "/etc/nginx/private/", "cht-backup/containers/nginx/etc/nginx/private"},
		{sources.GroupCredentials, "couchdb", "/opt/couchdb/etc/local.d/", "cht-backup/containers/couchdb/opt/couchdb/etc/local.d"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	m.Groups = m.Groups[:3] // tls and credentials skipped at backup
	if got := containerParts(m); len(got) != 0 {
		t.Errorf("skipped parts must not be restored: %+v", got)
	}
}

// In place, .env follows --cht-dir and the data follows the restored .env.
func TestInPlaceLayoutFollowsTheRestoredEnv(t *testing.T) {
	m := manifestOf("/home/ubuntu/cht")
	tests := []struct {
		name string
		env  map[string]string
		want sources.HostPaths
	}{
		{"defaults under the new cht dir", map[string]string{},
			sources.HostPaths{CHTDir: "/opt/cht", EnvFile: "/opt/cht/upgrade-service/.env", CouchDBData: "/opt/cht/couchdb", ComposePath: "/opt/cht/compose", Project: "cht"}},
		{"absolute values", map[string]string{"COUCHDB_DATA": "/srv/couch", "CHT_COMPOSE_PATH": "/srv/compose", "CHT_COMPOSE_PROJECT_NAME": "prod"},
			sources.HostPaths{CHTDir: "/opt/cht", EnvFile: "/opt/cht/upgrade-service/.env", CouchDBData: "/srv/couch", ComposePath: "/srv/compose", Project: "prod"}},
		{"relative to upgrade-service", map[string]string{"COUCHDB_DATA": "../couchdb", "CHT_COMPOSE_PATH": "./../compose/"},
			sources.HostPaths{CHTDir: "/opt/cht", EnvFile: "/opt/cht/upgrade-service/.env", CouchDBData: "/opt/cht/couchdb", ComposePath: "/opt/cht/compose", Project: "cht"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sources.ResolveHostPaths("/opt/cht/", tt.env)
			if h != tt.want {
				t.Fatalf("host paths\n got %+v\nwant %+v", h, tt.want)
			}
			ps := InPlaceLayout(m, h)
			want := []Placement{
				{sources.GroupCouchDB, "home/ubuntu/cht/couchdb", tt.want.CouchDBData},
				{sources.GroupEnv, "home/ubuntu/cht/upgrade-service/.env", "/opt/cht/upgrade-service/.env"},
				{sources.GroupCompose, "home/ubuntu/cht/compose/cht-core.yml", tt.want.ComposePath + "/cht-core.yml"},
				{sources.GroupCompose, "home/ubuntu/cht/compose/cht-couchdb.yml", tt.want.ComposePath + "/cht-couchdb.yml"},
				{sources.GroupCompose, "home/ubuntu/cht/upgrade-service/docker-compose.yml", "/opt/cht/upgrade-service/docker-compose.yml"},
			}
			if !reflect.DeepEqual(ps, want) {
				t.Errorf("placements\n got %+v\nwant %+v", ps, want)
			}
		})
	}
}

func TestLocatorTakesTheLongestPrefix(t *testing.T) {
	loc := locator(TargetLayout(manifestOf("/home/ubuntu/cht"), "/r"), "")
	tests := map[string]string{
		"home/ubuntu/cht/couchdb/.shards/00-7f/x.view":         "/r/couchdb/.shards/00-7f/x.view",
		"home/ubuntu/cht/couchdb":                              "/r/couchdb",
		"home/ubuntu/cht/upgrade-service/.env":                 "/r/upgrade-service/.env",
		"cht-backup/containers/nginx/etc/nginx/private/a.pem":  "/r/tls/a.pem",
		"cht-backup/manifest.json":                             "/r/manifest.json",
		"home/ubuntu/cht/couchdbx":                             "",
		"home/ubuntu/cht/upgrade-service/.env.before-restore-": "",
	}
	for in, want := range tests {
		if got := loc(in); got != want {
			t.Errorf("%s -> %q, want %q", in, got, want)
		}
	}
	// Nested placements: the deeper one wins, whatever their order.
	nested := locator([]Placement{{From: "h/cht", To: "/a"}, {From: "h/cht/couchdb", To: "/b"}, {From: "h", To: "/c"}}, "")
	for in, want := range map[string]string{"h/cht/couchdb/x": "/b/x", "h/cht/y": "/a/y", "h/z": "/c/z"} {
		if got := nested(in); got != want {
			t.Errorf("nested: %s -> %q, want %q", in, got, want)
		}
	}
	if got := locator(nil, "/x")("a/b"); got != "/x/a/b" {
		t.Errorf("fallback: %q", got)
	}
}

// A .env that was a symlink at backup time is restored from the copy of its content that the
// backup staged, never from the link; a manifest without a group falls back to the source path.
func TestLayoutTakesEachGroupFromWhereTheArchiveHoldsIt(t *testing.T) {
	m := manifestOf("/home/ubuntu/cht")
	m.Group(sources.GroupEnv).Root = "cht-backup/resolved/home/ubuntu/cht/upgrade-service/.env"
	ps := TargetLayout(m, "/r")
	if ps[2].Group != sources.GroupEnv || ps[2].From != "cht-backup/resolved/home/ubuntu/cht/upgrade-service/.env" {
		t.Errorf("env placement %+v, want it from the staged copy", ps[2])
	}
	m = manifestOf("/srv/cht")
	m.Groups = nil
	ps = TargetLayout(m, "/r")
	if ps[1].From != "srv/cht/couchdb" || ps[2].From != "srv/cht/upgrade-service/.env" {
		t.Errorf("without groups: couchdb %+v, env %+v", ps[1], ps[2])
	}
}
