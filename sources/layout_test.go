package sources

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// childDiscoverEnv makes the test binary run Discover on the named CHT
// directory and print the error: used to run Discover as an unprivileged
// user, since root reads any directory.
const childDiscoverEnv = "SOURCES_TEST_CHILD_DISCOVER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDiscoverEnv); dir != "" {
		_, err := Discover(dir)
		fmt.Print(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDiscoverDefaults(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir(), func(o *sourcestest.Options) { o.MinimalEnv = true })
	l, err := Discover(tree.Root)
	if err != nil {
		t.Fatal(err)
	}
	want := &Layout{
		CHTDir:      tree.Root,
		EnvFile:     filepath.Join(tree.Root, "upgrade-service", ".env"),
		CouchDBData: filepath.Join(tree.Root, "couchdb"),
		ComposePath: filepath.Join(tree.Root, "compose"),
		ProjectName: "cht",
		ComposeFiles: []string{
			filepath.Join(tree.Root, "compose", "cht-core.yml"),
			filepath.Join(tree.Root, "compose", "cht-couchdb.yml"),
			filepath.Join(tree.Root, "upgrade-service", "docker-compose.yml"),
		},
		EnvKeys: []string{"COUCHDB_PASSWORD", "COUCHDB_SECRET", "COUCHDB_USER", "COUCHDB_UUID", "DOCKER_CONFIG_PATH"},
	}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("got  %+v\nwant %+v", l, want)
	}
}

func TestDiscoverOverrides(t *testing.T) {
	base := t.TempDir()
	cht := filepath.Join(base, "cht")
	// Relative values are resolved against upgrade-service/, as compose does.
	tree := sourcestest.NewTree(t, cht, func(o *sourcestest.Options) {
		o.CouchDBData = "../../srv/couch"
		o.ComposePath = "../compose-files"
		o.Project = "clinic"
	})
	// A relative --cht-dir is made absolute.
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	if err := os.Chdir(base); err != nil {
		t.Fatal(err)
	}
	l, err := Discover("cht")
	if err != nil {
		t.Fatal(err)
	}
	if l.CHTDir != cht || l.CouchDBData != filepath.Join(base, "srv", "couch") || l.ComposePath != filepath.Join(cht, "compose-files") || l.ProjectName != "clinic" {
		t.Errorf("layout %+v", l)
	}
	if l.CouchDBData != tree.CouchDBData {
		t.Errorf("CouchDBData %s, tree wrote %s", l.CouchDBData, tree.CouchDBData)
	}
	if len(l.ComposeFiles) != 3 || l.ComposeFiles[0] != filepath.Join(cht, "compose-files", "cht-core.yml") {
		t.Errorf("compose files %v", l.ComposeFiles)
	}
}

func TestDiscoverDefaultDir(t *testing.T) {
	if _, err := os.Stat(DefaultCHTDir); err == nil {
		t.Skip("a CHT installation exists at " + DefaultCHTDir)
	}
	_, err := Discover("")
	if err == nil || !strings.Contains(err.Error(), "/home/ubuntu/cht/upgrade-service/.env") {
		t.Fatalf("want an error naming the default .env, got %v", err)
	}
}

func TestDiscoverMissingEnv(t *testing.T) {
	tree := sourcestest.NewTree(t, t.TempDir())
	os.Remove(tree.EnvFile)
	_, err := Discover(tree.Root)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{tree.EnvFile, "not found", "upgrade service's .env", "--cht-dir"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestDiscoverBadCouchDBData(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(tree *sourcestest.Tree)
		want    string
	}{
		{"missing", func(tree *sourcestest.Tree) { os.RemoveAll(tree.CouchDBData) }, "does not exist"},
		{"a file", func(tree *sourcestest.Tree) {
			os.RemoveAll(tree.CouchDBData)
			os.WriteFile(tree.CouchDBData, nil, 0o644)
		}, "is not a directory"},
		{"under a file", func(tree *sourcestest.Tree) {
			os.RemoveAll(tree.CouchDBData)
			os.WriteFile(tree.CouchDBData, nil, 0o644)
			env, _ := os.ReadFile(tree.EnvFile)
			os.WriteFile(tree.EnvFile, append(env, []byte("COUCHDB_DATA="+tree.CouchDBData+"/data\n")...), 0o600)
		}, "cannot be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := sourcestest.NewTree(t, t.TempDir())
			tt.breakIt(tree)
			_, err := Discover(tree.Root)
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			for _, want := range []string{tree.CouchDBData, "COUCHDB_DATA", tree.EnvFile, tt.want} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			assertNoSecret(t, tree, msg)
		})
	}
}

// TestDiscoverUnreadableCouchDBData runs Discover as an unprivileged user,
// because root can read a directory whatever its mode.
func TestDiscoverUnreadableCouchDBData(t *testing.T) {
	root := t.TempDir()
	tree := sourcestest.NewTree(t, filepath.Join(root, "cht"))
	if err := os.Chmod(tree.CouchDBData, 0o700); err != nil {
		t.Fatal(err)
	}
	var msg string
	if os.Geteuid() != 0 {
		if err := os.Chmod(tree.CouchDBData, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(tree.CouchDBData, 0o700) })
		_, err := Discover(tree.Root)
		if err == nil {
			t.Fatal("want an error")
		}
		msg = err.Error()
	} else {
		// Let uid 65534 reach .env and the test binary, but not the data.
		for d := root; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		os.Chmod(tree.EnvFile, 0o644)
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(root, "sources.test")
		copyFile(t, exe, bin, 0o755)
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), childDiscoverEnv+"="+tree.Root)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("running Discover as uid 65534: %v: %s", err, out)
		}
		msg = string(out)
	}
	for _, want := range []string{tree.CouchDBData, "COUCHDB_DATA", "cannot be read", "permission denied"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	assertNoSecret(t, tree, msg)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func assertNoSecret(t *testing.T, tree *sourcestest.Tree, text string) {
	t.Helper()
	for _, s := range tree.SecretValues() {
		if strings.Contains(text, s) {
			t.Errorf("a secret .env value leaked into: %q", text)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 163 << 10: "163.0 KiB", 5 << 30: "5.0 GiB", 1 << 20: "1.0 MiB", 1<<20 - 1: "1024.0 KiB", 3 << 40: "3.0 TiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("%d: %s, want %s", n, got, want)
		}
	}
}
