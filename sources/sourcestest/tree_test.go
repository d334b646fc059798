package sourcestest_test

import (
	"bytes"
	"compress/gzip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func TestTreeEnvReadsBackAsWritten(t *testing.T) {
	for name, opt := range map[string]sourcestest.Option{
		"full":      func(o *sourcestest.Options) {},
		"minimal":   func(o *sourcestest.Options) { o.MinimalEnv = true },
		"no secret": func(o *sourcestest.Options) { o.NoSecretAndUUID = true },
	} {
		t.Run(name, func(t *testing.T) {
			tree := sourcestest.NewTree(t, t.TempDir(), opt)
			env, err := sources.ParseEnvFile(tree.EnvFile)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(env, tree.Env) {
				t.Errorf("parsed %v\nwrote  %v", env, tree.Env)
			}
			fi, _ := os.Stat(tree.EnvFile)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf(".env mode %v, want 0600", fi.Mode())
			}
			raw, _ := os.ReadFile(tree.EnvFile)
			for _, s := range tree.SecretValues() {
				if !strings.Contains(string(raw), s) {
					t.Errorf("secret %q not in .env", s)
				}
			}
		})
	}
}

func TestTreeCouchFilesAreIncompressibleAndGrow(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.FileSize = 64 << 10 })
	data, err := os.ReadFile(tree.CouchFiles[0])
	if err != nil || len(data) != 64<<10 {
		t.Fatalf("%s: %d bytes, %v", tree.CouchFiles[0], len(data), err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if buf.Len() < len(data) {
		t.Errorf("couch file compresses from %d to %d bytes", len(data), buf.Len())
	}
	if len(tree.ViewFiles) != len(tree.ShardRanges) {
		t.Errorf("%d view files for %d ranges", len(tree.ViewFiles), len(tree.ShardRanges))
	}
	if err := tree.GrowCouchFiles(1000); err != nil {
		t.Fatal(err)
	}
	for _, p := range tree.CouchFiles {
		if fi, _ := os.Stat(p); strings.HasSuffix(p, ".couch") && fi.Size() != 64<<10+1000 {
			t.Errorf("%s has %d bytes after growing", p, fi.Size())
		}
	}
}

func TestWriteTreeWithoutTesting(t *testing.T) {
	tree, err := sourcestest.WriteTree(t.TempDir()+"/demo", sourcestest.Options{Nouveau: true, Databases: []string{"medic"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sources.Discover(tree.Root); err != nil {
		t.Fatal(err)
	}
}
