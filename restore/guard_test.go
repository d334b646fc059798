package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// restore --target refuses a DIR whose layout would land on this host's live CHT files, however
// the path is spelled: through a symlink, or one level up from live data.
func TestLiveClash(t *testing.T) {
	root := t.TempDir()
	srv := filepath.Join(root, "srv")
	tree, err := sourcestest.WriteTree(filepath.Join(root, "cht"), sourcestest.Options{CouchDBData: filepath.Join(srv, "couchdb"), NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link-to-cht")
	linkSrv := filepath.Join(root, "link-to-srv")
	for _, l := range [][2]string{{tree.Root, link}, {srv, linkSrv}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	for target, want := range map[string]string{
		tree.Root:                                "CHT directory",
		link:                                     "CHT directory",
		link + "/":                               "CHT directory",
		filepath.Join(link, "x", ".."):           "CHT directory",
		srv:                                      "CouchDB data directory " + filepath.Join(srv, "couchdb"),
		linkSrv:                                  "CouchDB data directory " + filepath.Join(srv, "couchdb"),
		filepath.Join(srv, "couchdb", "restore"): "CouchDB data directory", // inside the live data
		filepath.Join(linkSrv, "couchdb", "new", "restore"): "CouchDB data directory", // inside it through a link, not there yet
		filepath.Join(tree.Root, "upgrade-service", ".."):   "CHT directory",
		filepath.Dir(tree.Root):                             "", // DIR/cht is not among the layout's names
		filepath.Join(root, "restore"):                      "",
		filepath.Join(link, "restore"):                      "", // a new directory inside the CHT dir touches no live path
	} {
		if got := LiveClash(tree.Root, target); !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("--target %s: got %q, want %q", target, got, want)
		}
	}

	// Live data one level below a layout name: moving DIR/couchdb aside would take it along.
	deep := filepath.Join(root, "deep")
	tree2, err := sourcestest.WriteTree(filepath.Join(root, "cht2"), sourcestest.Options{CouchDBData: filepath.Join(deep, "couchdb", "data"), NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := LiveClash(tree2.Root, deep); !strings.HasPrefix(got, "CouchDB data directory") {
		t.Errorf("--target %s holds the live data in DIR/couchdb/data: got %q", deep, got)
	}
}

// A target that another user owns, or a symlink another user planted, is refused before borg
// runs; nothing is written there.
func TestToTargetRefusesADirectoryOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to give a directory to another user")
	}
	root := t.TempDir()
	theirs := filepath.Join(root, "theirs")
	os.Mkdir(theirs, 0o755)
	if err := os.Chown(theirs, 4321, 4321); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(root, "mine")
	os.Mkdir(mine, 0o700)
	planted := filepath.Join(root, "planted")
	os.Symlink(mine, planted)
	if err := os.Lchown(planted, 4321, 4321); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{theirs, planted} {
		_, err := ToTarget(context.Background(), TargetOptions{Dir: dir})
		if !errors.Is(err, ErrTargetOwner) || !strings.Contains(err.Error(), "uid 4321") {
			t.Errorf("%s: want ErrTargetOwner naming uid 4321, got %v", dir, err)
		}
	}
	for _, dir := range []string{theirs, mine} {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%s was written to: %v", dir, entries)
		}
	}
}
