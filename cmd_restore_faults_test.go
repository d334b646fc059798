package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// restore --target keeps the copy private and never lands on live files: a symlink to the CHT
// dir is refused, a directory of another user is refused, an existing DIR is made 0700 and the
// restored .env is 0600 even when the host's was readable by others.
func TestRestoreTargetGuards(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	if err := os.Chmod(h.tree.EnvFile, 0o644); err != nil {
		t.Fatal(err)
	}
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	before := treeState(t, h.tree)

	link := filepath.Join(w.dir, "cht-link")
	if err := os.Symlink(h.tree.Root, link); err != nil {
		t.Fatal(err)
	}
	r := w.run(w.restoreArgs(h, "latest", "--target", link, "--force")...)
	if r.code != 3 || !strings.Contains(r.stderr, "live CHT directory") || len(lines(r.stderr, "what to do")) != 1 {
		t.Fatalf("a symlink to the CHT dir must be refused as the live CHT dir:\n%s", r)
	}
	if after := treeState(t, h.tree); !reflect.DeepEqual(after, before) {
		t.Fatal("a refused restore changed the CHT tree")
	}
	if aside, _ := filepath.Glob(filepath.Join(h.tree.Root, "*.before-restore-*")); len(aside) > 0 {
		t.Fatalf("a refused restore moved things aside: %v", aside)
	}

	theirs := filepath.Join(w.dir, "theirs")
	os.Mkdir(theirs, 0o755)
	os.Chown(theirs, 4321, 4321)
	r = w.run(w.restoreArgs(h, "latest", "--target", theirs)...)
	if r.code != 3 || !strings.Contains(r.stderr, "uid 4321") || len(lines(r.stderr, "what to do")) != 1 {
		t.Fatalf("a directory of another user must be refused:\n%s", r)
	}
	if entries, _ := os.ReadDir(theirs); len(entries) > 0 {
		t.Fatalf("the refused target was written to: %v", entries)
	}

	open := filepath.Join(w.dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	r = w.run(w.restoreArgs(h, "latest", "--target", open)...)
	if r.code != 0 {
		t.Fatalf("restore into an empty existing dir:\n%s", r)
	}
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o700 {
		t.Errorf("the target must be made 0700, is %v", fi.Mode().Perm())
	}
	env := filepath.Join(open, "upgrade-service", ".env")
	if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the restored .env must be 0600: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(env); string(b) != string(before[h.tree.EnvFile].body) {
		t.Errorf("the restored .env differs from the host's")
	}
}
