package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func TestMoveAsideNeverReusesAName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".env")
	os.WriteFile(p, []byte("one"), 0o600)
	os.WriteFile(p+".before-restore-S", []byte("older"), 0o600)
	mv, err := moveAside(p, "S")
	if err != nil {
		t.Fatal(err)
	}
	if mv.To != p+".before-restore-S-2" {
		t.Fatalf("moved to %s", mv.To)
	}
	if b, _ := os.ReadFile(p + ".before-restore-S"); string(b) != "older" {
		t.Fatal("an earlier copy was overwritten")
	}
	// The next free name counts on.
	os.WriteFile(p, []byte("two"), 0o600)
	if mv, err := moveAside(p, "S"); err != nil || mv.To != p+".before-restore-S-3" {
		t.Fatalf("third copy moved to %s (%v)", mv.To, err)
	}
}

func TestPlaceNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "new"), filepath.Join(dir, "sub", "old")
	os.WriteFile(from, []byte("new"), 0o600)
	os.MkdirAll(filepath.Dir(to), 0o755)
	os.WriteFile(to, []byte("old"), 0o600)
	if err := place(from, to); err == nil || !strings.Contains(err.Error(), "already there") {
		t.Fatalf("place over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(to); string(b) != "old" {
		t.Fatal("overwritten")
	}
	to2 := filepath.Join(dir, "made", "parents", "f")
	if err := place(from, to2); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(to2); string(b) != "new" {
		t.Fatal("not placed")
	}
}

// After a failure, the commands undo exactly what was done, in reverse, and start again only
// the containers this run stopped; the state names each container as Docker reports it now.
func TestAftermathCommandsUndoInReverse(t *testing.T) {
	dir := t.TempDir()
	couch := ContainerState{ID: "c", Name: "cht-couchdb-1"}
	nginx := ContainerState{ID: "n", Name: "cht-nginx-1"}
	old := ContainerState{ID: "o", Name: "cht-old-1"}
	p := &Plan{Stamp: "S", Containers: []ContainerState{couch, nginx, old}}
	in := func(c ContainerState, state string) ContainerState { c.State = state; return c }
	res := &InPlaceResult{
		Stopped:       []ContainerState{nginx, couch},
		ContainersNow: []ContainerState{in(couch, "exited"), in(nginx, "exited"), in(old, "exited")},
		Saved:         []ContainerCopy{{Container: "cht-nginx-1", Dir: "/etc/nginx/private/", SavedTo: dir + "/saved/nginx"}},
		MovedAside:    []Move{{dir + "/couchdb", dir + "/couchdb.before-restore-S"}, {dir + "/a b/.env", dir + "/a b/.env.before-restore-S"}},
		Placed:        []Placement{{Group: sources.GroupCouchDB, To: dir + "/couchdb"}},
	}
	state, cmds := p.aftermath(res, StepPlace, nil)
	want := []string{
		"mv " + dir + "/couchdb " + dir + "/couchdb.failed-restore-S",
		"mv '" + dir + "/a b/.env.before-restore-S' '" + dir + "/a b/.env'",
		"mv " + dir + "/couchdb.before-restore-S " + dir + "/couchdb",
		"docker start cht-couchdb-1 cht-nginx-1", // not the exited leftover
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Errorf("commands\n got %q\nwant %q", cmds, want)
	}
	joined := strings.Join(state, "\n")
	for _, s := range []string{"container cht-nginx-1 is exited (it was running; this restore stopped it)",
		"container cht-old-1 is exited (as it was before this restore)", "moved aside, intact",
		"not done: put the files in place, copy files into the containers, start the containers"} {
		if !strings.Contains(joined, s) {
			t.Errorf("state lacks %q:\n%s", s, joined)
		}
	}

	state, cmds = p.aftermath(&InPlaceResult{ContainersNow: []ContainerState{in(couch, "running")}}, StepExtract, nil)
	if len(cmds) != 0 || !strings.Contains(strings.Join(state, ""), "nothing on this host was changed") {
		t.Errorf("a failed extraction changes nothing: %q %q", state, cmds)
	}

	// Interrupted while stopping: only nginx is down; starting it is the whole way back.
	state, cmds = p.aftermath(&InPlaceResult{Stopped: []ContainerState{nginx},
		ContainersNow: []ContainerState{in(couch, "running"), in(nginx, "exited"), in(old, "exited")}}, StepStop, nil)
	if want := []string{"docker start cht-nginx-1"}; !reflect.DeepEqual(cmds, want) {
		t.Errorf("after an interrupted stop\n got %q\nwant %q", cmds, want)
	}
	if joined := strings.Join(state, "\n"); !strings.Contains(joined, "container cht-couchdb-1 is running (as it was before this restore)") {
		t.Errorf("state:\n%s", joined)
	}

	// Interrupted while starting, every container up again: nothing is left to finish.
	state, _ = p.aftermath(&InPlaceResult{Stopped: res.Stopped, ContainersNow: []ContainerState{in(couch, "running"), in(nginx, "running")}}, StepStart, nil)
	if joined := strings.Join(state, "\n"); strings.Contains(joined, "to finish the restore") {
		t.Errorf("nothing to finish, yet:\n%s", joined)
	}

	// Interrupted while starting: CouchDB is up again, nginx not yet.
	state, cmds = p.aftermath(&InPlaceResult{Stopped: res.Stopped, ContainersNow: []ContainerState{in(couch, "running"), in(nginx, "exited"), in(old, "exited")}},
		StepStart, []ContainerCopy{{Container: "cht-nginx-1", Dir: "/etc/nginx/private/", SavedTo: "/s/nginx"}})
	want = []string{"docker stop cht-couchdb-1", "docker cp -a /s/nginx/. cht-nginx-1:/etc/nginx/private/", "docker start cht-couchdb-1 cht-nginx-1"}
	if !reflect.DeepEqual(cmds, want) {
		t.Errorf("after start\n got %q\nwant %q", cmds, want)
	}
	if joined := strings.Join(state, "\n"); !strings.Contains(joined, "to finish the restore instead of going back, run docker start cht-nginx-1") {
		t.Errorf("an interrupted start should say how to finish:\n%s", joined)
	}
}

func TestScratchIsPrivateAndStaleOnesGo(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "verify")
	s, err := NewScratch(parent, "drill-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{parent, s.Dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s must be mode 0700: %v %v", d, fi.Mode(), err)
		}
	}
	// A dead run's scratch (pid 2^22+1 does not exist on Linux) goes; a live one's stays.
	dead := filepath.Join(parent, "drill-20200101T000000Z-00000000.pid4194305")
	os.MkdirAll(filepath.Join(dead, "x"), 0o500)
	removed, err := RemoveStaleScratch(parent, "drill-")
	if err != nil || len(removed) != 1 || removed[0] != dead {
		t.Fatalf("stale scratch: %v %v", removed, err)
	}
	if _, err := os.Stat(s.Dir); err != nil {
		t.Fatal("a live run's scratch was removed")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatal("Close left the scratch directory")
	}
}

// The plan a user confirms names the moved-aside copy the run will really use.
func TestPlanNamesTheFreeAsideName(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, ".env")
	stamp := "20261123T000000Z"
	os.WriteFile(env, []byte("x"), 0o600)
	os.WriteFile(env+".before-restore-"+stamp, []byte("an earlier restore's copy"), 0o600)
	var b strings.Builder
	(&Plan{MoveAside: []string{env}, Stamp: stamp}).Describe(&b)
	if want := env + " -> " + env + ".before-restore-" + stamp + "-2"; !strings.Contains(b.String(), want) {
		t.Fatalf("plan does not name %q:\n%s", want, b.String())
	}
	mv, err := moveAside(env, stamp)
	if err != nil || mv.To != env+".before-restore-"+stamp+"-2" {
		t.Fatalf("moveAside: %+v %v", mv, err)
	}
}

// The copy a killed in-place restore left next to the CouchDB data (where the live .env puts it)
// goes; a live run's copy, and anything else there, stays.
func TestRemoveStaleInPlaceScratch(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "srv", "couchdb")
	tree, err := sourcestest.WriteTree(filepath.Join(root, "cht"), sourcestest.Options{CouchDBData: data, NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(data)
	dead := filepath.Join(parent, scratchPrefix+"20200101T000000Z-00000000.pid4194305")
	live := filepath.Join(parent, fmt.Sprintf("%s20200101T000000Z-00000000.pid%d", scratchPrefix, os.Getpid()))
	other := filepath.Join(parent, "couchdb.before-restore-20200101T000000Z")
	for _, d := range []string{filepath.Join(dead, "archive"), live, other} {
		os.MkdirAll(d, 0o700)
	}
	removed, err := RemoveStaleInPlaceScratch(tree.Root)
	if err != nil || len(removed) != 1 || removed[0] != dead {
		t.Fatalf("removed %v, %v; want only %s", removed, err, dead)
	}
	for _, d := range []string{live, other, data} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s must stay: %v", d, err)
		}
	}
}

// COUCHDB_DATA through a symlink: the restore's scratch sits beside the real data directory, so
// that is where a stale one is looked for.
func TestRemoveStaleInPlaceScratchFollowsALinkedDataDir(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "srv", "couchdb")
	link := filepath.Join(root, "links", "couchdb")
	os.MkdirAll(real, 0o755)
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	tree, err := sourcestest.WriteTree(filepath.Join(root, "cht"), sourcestest.Options{CouchDBData: link, NoChown: true})
	if err != nil {
		t.Fatal(err)
	}
	name := scratchPrefix + "20200101T000000Z-00000000.pid4194305"
	beside, notThere := filepath.Join(root, "srv", name), filepath.Join(root, "links", name)
	for _, d := range []string{beside, notThere} {
		os.MkdirAll(d, 0o700)
	}
	removed, err := RemoveStaleInPlaceScratch(tree.Root)
	if err != nil || len(removed) != 1 || removed[0] != beside {
		t.Fatalf("removed %v, %v; want only %s", removed, err, beside)
	}
}
