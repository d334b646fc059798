package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/restore"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
)

// These tests run against the real CouchDB 3.4.3 image (couchdb-real:3), loaded by
// scripts/test-env.sh from ../shared/couchdb/; without it they skip with the reason.

// newRealCHTHost is a CHT host whose couchdb service is the real CouchDB on the tree's data dir.
func newRealCHTHost(t *testing.T, w *world) (*chtHost, *sourcestest.Couch) {
	t.Helper()
	needEnv(t)
	sourcestest.NeedRealCouchDB(t)
	project := sourcestest.UniqueProject()
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"), func(o *sourcestest.Options) { o.Project, o.EmptyCouchDB = project, true })
	cs := sourcestest.StartRealCHT(t, context.Background(), tree)
	return &chtHost{tree: tree, containers: cs}, cs.CouchFor(tree)
}

// seedCHT fills medic (q=12), medic-sentinel and _users with documents, attachments and a view,
// updates medic's documents a few times (old revisions and index entries for compaction to drop),
// and queries the view so its index exists under .shards.
func seedCHT(t *testing.T, c *sourcestest.Couch) {
	t.Helper()
	c.Must(t, "PUT", "/medic?q=12", nil, nil)
	c.Must(t, "PUT", "/medic-sentinel", nil, nil)
	// CouchDB's single-node setup creates _users too: a PUT that meets it answers 412 (made) or,
	// while it is being made, 500 "conflict"; either way _users is there once a GET finds it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, body, err := c.Do(context.Background(), "PUT", "/_users", nil)
		if err == nil && (st/100 == 2 || st == 412) {
			break
		}
		if gst, _, gerr := c.Do(context.Background(), "GET", "/_users", nil); gerr == nil && gst == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating _users: %d %v %s", st, err, body)
		}
	}
	att := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("photo of a patient card ", 40)))
	bulk := func(db string, docs []map[string]any) []map[string]any {
		var res []map[string]any
		c.Must(t, "POST", "/"+db+"/_bulk_docs", map[string]any{"docs": docs}, &res)
		for _, r := range res {
			if r["error"] != nil {
				t.Fatalf("seeding %s: %v", db, r)
			}
		}
		return res
	}
	var medic []map[string]any
	for i := 0; i < 1200; i++ {
		d := map[string]any{"_id": fmt.Sprintf("seed-%05d", i), "type": []string{"person", "clinic", "data_record"}[i%3], "n": i}
		if i%60 == 0 {
			d["_attachments"] = map[string]any{"card.txt": map[string]any{"content_type": "text/plain", "data": att}}
		}
		medic = append(medic, d)
	}
	res := bulk("medic", medic)
	bulk("medic", []map[string]any{{"_id": "_design/cht", "views": map[string]any{
		"by_type": map[string]any{"map": "function (doc) { if (doc.type) { emit([doc.type, doc.n], null); } }"}}}})
	var sentinel []map[string]any
	for i := 0; i < 200; i++ {
		sentinel = append(sentinel, map[string]any{"_id": fmt.Sprintf("seed-task-%04d", i), "transitions": map[string]any{"n": i}})
	}
	bulk("medic-sentinel", sentinel)
	var users []map[string]any
	for i := 0; i < 15; i++ {
		name := fmt.Sprintf("chw%02d", i)
		users = append(users, map[string]any{"_id": "org.couchdb.user:" + name, "name": name, "type": "user", "roles": []string{"chw"}, "password": "pw-" + name})
	}
	bulk("_users", users)
	// Two rounds of updates leave old revisions and stale index entries: compaction shrinks both.
	for round := 0; round < 2; round++ {
		for i := range medic {
			medic[i]["_rev"] = res[i]["rev"]
			medic[i]["round"] = round
			delete(medic[i], "_attachments")
			if i%60 == 0 {
				medic[i]["_attachments"] = map[string]any{"card.txt": map[string]any{"content_type": "text/plain", "data": att}}
			}
		}
		res = bulk("medic", medic)
		c.Must(t, "GET", "/medic/_design/cht/_view/by_type?limit=1", nil, nil)
	}
}

// committedRevs reads the revision of every document of each database (design documents too).
func committedRevs(t *testing.T, c *sourcestest.Couch, dbs ...string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, db := range dbs {
		var all struct {
			Rows []struct {
				ID    string `json:"id"`
				Value struct {
					Rev string `json:"rev"`
				} `json:"value"`
			} `json:"rows"`
		}
		c.Must(t, "GET", "/"+db+"/_all_docs", nil, &all)
		out[db] = map[string]string{}
		for _, r := range all.Rows {
			out[db][r.ID] = r.Value.Rev
		}
	}
	return out
}

// revGen is the generation number of a revision ("3-abc" -> 3).
func revGen(rev string) int {
	n, _ := strconv.Atoi(strings.SplitN(rev, "-", 2)[0])
	return n
}

// servesCommitted fails the test unless c serves every document of want at its revision or a
// later one (a later one exists only when the writer updated or deleted it after want was read).
func servesCommitted(t *testing.T, c *sourcestest.Couch, want map[string]map[string]string) {
	t.Helper()
	for db, docs := range want {
		var keys []string
		for id := range docs {
			keys = append(keys, id)
		}
		var got struct {
			Rows []struct {
				Key   string `json:"key"`
				Error string `json:"error"`
				Value struct {
					Rev     string `json:"rev"`
					Deleted bool   `json:"deleted"`
				} `json:"value"`
			} `json:"rows"`
		}
		c.Must(t, "POST", "/"+db+"/_all_docs", map[string]any{"keys": keys}, &got)
		missing, older := 0, 0
		for _, r := range got.Rows {
			switch {
			case r.Error != "":
				missing++
				if missing <= 3 {
					t.Errorf("%s: %s/%s committed at %s before the backup is not served (%s)", c, db, r.Key, docs[r.Key], r.Error)
				}
			case revGen(r.Value.Rev) < revGen(docs[r.Key]):
				older++
				if older <= 3 {
					t.Errorf("%s: %s/%s is at %s, older than %s committed before the backup", c, db, r.Key, r.Value.Rev, docs[r.Key])
				}
			}
		}
		if len(got.Rows) != len(docs) || missing+older > 0 {
			t.Fatalf("%s: database %s: %d rows for %d documents, %d missing, %d older", c, db, len(got.Rows), len(docs), missing, older)
		}
	}
}

// liveWriter keeps adding, updating and deleting documents and starting database and view
// compactions until stopped. It only deletes its own documents (w-*), and only updates the
// seeded ones, so what was committed before a backup stays servable at that revision or later.
type liveWriter struct {
	stop     chan struct{}
	done     sync.WaitGroup
	writes   atomic.Int64
	compacts atomic.Int64
	errs     atomic.Int64
}

func startWriter(t *testing.T, c *sourcestest.Couch) *liveWriter {
	lw := &liveWriter{stop: make(chan struct{})}
	lw.done.Add(1)
	go func() {
		defer lw.done.Done()
		ctx := context.Background()
		revs := map[string]string{}
		deadline := time.Now().Add(3 * time.Minute) // bounded even if nobody stops it
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-lw.stop:
				return
			default:
			}
			var docs []map[string]any
			for j := 0; j < 20; j++ {
				id := fmt.Sprintf("w-%05d", i*20+j)
				docs = append(docs, map[string]any{"_id": id, "type": "data_record", "n": i})
				if old := fmt.Sprintf("w-%05d", (i-1)*20+j); revs[old] != "" {
					if j%2 == 0 {
						docs = append(docs, map[string]any{"_id": old, "_rev": revs[old], "_deleted": true})
					} else {
						docs = append(docs, map[string]any{"_id": old, "_rev": revs[old], "type": "person", "n": -i})
					}
				}
			}
			st, body, err := c.Do(ctx, "POST", "/medic/_bulk_docs", map[string]any{"docs": docs})
			if err != nil || st/100 != 2 {
				lw.errs.Add(1)
			} else {
				lw.writes.Add(int64(len(docs)))
				var res []struct{ ID, Rev string }
				json.Unmarshal(body, &res)
				for _, d := range res {
					if d.Rev != "" {
						revs[d.ID] = d.Rev
					}
				}
			}
			if i%3 == 0 {
				c.Do(ctx, "POST", "/medic-sentinel/_bulk_docs", map[string]any{"docs": []map[string]any{{"_id": fmt.Sprintf("w-task-%05d", i)}}})
				c.Do(ctx, "GET", "/medic/_design/cht/_view/by_type?limit=1", nil)
			}
			if i%4 == 0 {
				for _, p := range []string{"/medic/_compact", "/medic/_compact/cht", "/medic-sentinel/_compact"} {
					if st, _, err := c.Do(ctx, "POST", p, map[string]any{}); err == nil && st/100 == 2 {
						lw.compacts.Add(1)
					}
				}
			}
			time.Sleep(40 * time.Millisecond)
		}
	}()
	t.Cleanup(lw.Stop)
	return lw
}

func (lw *liveWriter) Stop() {
	select {
	case <-lw.stop:
	default:
		close(lw.stop)
	}
	lw.done.Wait()
}

// noDrillLeftovers fails when a drill container or network is left behind.
func noDrillLeftovers(t *testing.T) {
	t.Helper()
	cli := sourcestest.DockerClient(t)
	cs, _ := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "cht-backup.drill-pid"))})
	for _, c := range cs {
		if pid, _ := strconv.Atoi(c.Labels["cht-backup.drill-pid"]); pid > 0 && syscall.Kill(pid, 0) != nil {
			t.Errorf("drill container %v left behind by pid %d", c.Names, pid)
		}
	}
	ns, _ := cli.NetworkList(context.Background(), network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "cht-backup.drill-pid"))})
	for _, n := range ns {
		if pid, _ := strconv.Atoi(n.Labels["cht-backup.drill-pid"]); pid > 0 && syscall.Kill(pid, 0) != nil {
			t.Errorf("drill network %s left behind by pid %d", n.Name, pid)
		}
	}
}

// checkDrillRecorded runs verify --json and checks the drill's findings there, in state.json and
// in the metrics: every database seeded, opened, with at least the documents committed before.
func checkDrillRecorded(t *testing.T, w *world, committed map[string]map[string]string) {
	t.Helper()
	r := w.run(w.verifyArgs("--json", "--couchdb", "always")...)
	if r.code != 0 {
		t.Fatalf("verify --json --couchdb always:\n%s", r)
	}
	var res []restore.VerifyResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res) != 1 || res[0].CouchDB == nil {
		t.Fatalf("verify --json: %v\n%s", err, r)
	}
	found := map[string]restore.DatabaseFinding{}
	for _, f := range res[0].CouchDB.Databases {
		found[f.Name] = f
	}
	for db, docs := range committed {
		f, ok := found[db]
		if !ok || !f.OK || f.Recorded == nil || f.Restored == nil || f.Restored.DocCount+f.Restored.DocDelCount < int64(len(docs)) || f.Restored.UpdateSeq < f.Recorded.UpdateSeq {
			t.Errorf("verify --json: database %s: %+v (want ok, at least %d documents)", db, f, len(docs))
		}
	}
	st, err := state.Load(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	e := st.Find(state.JobVerify, w.remoteRepo())
	if e == nil || e.LastRun.CouchDB == nil || e.LastRun.CouchDB.Status != restore.DrillPassed || len(e.LastRun.CouchDB.Databases) < 3 {
		t.Fatalf("state.json lacks the drill: %+v", e)
	}
	metrics, _ := os.ReadFile(filepath.Join(w.stateDir, "metrics", "cht_backup.prom"))
	for _, want := range []string{
		`cht_backup_couchdb_drill_status{job="verify",repository="` + w.remoteRepo() + `"} 1`,
		`cht_backup_couchdb_drill_database_ok{database="medic",job="verify",repository="` + w.remoteRepo() + `"} 1`,
		`cht_backup_couchdb_drill_database_docs{database="_users",job="verify",repository="` + w.remoteRepo() + `"} 16`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
}

// bootCouchDB starts the real CouchDB on a restored data directory (no published port, default
// bridge) and returns a client for it; t.Cleanup removes the container.
func bootCouchDB(t *testing.T, dataDir, user, password string) *sourcestest.Couch {
	t.Helper()
	cli := sourcestest.NeedRealCouchDB(t)
	ctx := context.Background()
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: sourcestest.RealCouchDBImage, Env: []string{"COUCHDB_USER=" + user, "COUCHDB_PASSWORD=" + password}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: dataDir, Target: "/opt/couchdb/data"}}}, nil, nil, "cht-backup-e2e-boot-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano()%1e9, 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	cs := &sourcestest.Containers{Client: cli, CouchDB: sourcestest.TestContainer{ID: resp.ID, Name: "restored copy"}}
	return &sourcestest.Couch{URL: cs.WaitCouchDB(t, ctx), User: user, Password: password}
}

// A live CouchDB taking writes and compacting its databases and view indexes while borg reads it
// is backed up, verified and restored, to a directory and in place, with no false alarm; every
// document committed before the backup began is served afterwards.
func TestLiveCouchDBBackupVerifyRestore(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h, couch := newRealCHTHost(t, w)
	seedCHT(t, couch)
	w.mustInit(t, w.remoteRepo())

	lw := startWriter(t, couch)
	time.Sleep(300 * time.Millisecond)
	committed := committedRevs(t, couch, "medic", "medic-sentinel", "_users")
	r := w.run(w.backupArgs(h)...)
	time.Sleep(300 * time.Millisecond)
	lw.Stop()
	t.Logf("backup under load (%d writes, %d compactions started, %d failed writes):\n%s", lw.writes.Load(), lw.compacts.Load(), lw.errs.Load(), r)
	if r.code != 0 && r.code != 1 {
		t.Fatalf("backup of a live CouchDB must succeed (0) or warn about files that changed (1):\n%s", r)
	}
	if lw.writes.Load() == 0 || lw.compacts.Load() == 0 {
		t.Fatalf("the writer did not load CouchDB during the backup: %d writes, %d compactions", lw.writes.Load(), lw.compacts.Load())
	}

	r = w.run(w.verifyArgs()...)
	t.Logf("verify:\n%s", r)
	if r.code != 0 || !strings.Contains(r.stdout, "verdict: OK") {
		t.Fatalf("verify of a good archive of a live CouchDB must pass:\n%s", r)
	}
	// CouchDB itself opened the copy and gave each database's figures, per database.
	if !strings.Contains(r.stdout, "couchdb drill: passed: CouchDB 3.4.3 (image "+sourcestest.RealCouchDBImage+")") || !strings.Contains(r.stdout, "compared with: the live CouchDB 3.4.3") {
		t.Fatalf("verify must say CouchDB opened the copy and what it compared with:\n%s", r)
	}
	for _, db := range []string{"medic", "medic-sentinel", "_users"} {
		if len(lines(r.stdout, "    ok      "+db+" ")) != 1 {
			t.Errorf("no drill line for database %s:\n%s", db, r)
		}
	}
	noDrillLeftovers(t)
	checkDrillRecorded(t, w, committed)

	target := filepath.Join(w.dir, "restored")
	r = w.run(w.restoreArgs(h, "latest", "--target", target)...)
	t.Logf("restore --target:\n%s", r)
	if r.code != 0 {
		t.Fatalf("restore --target of a good archive of a live CouchDB must pass:\n%s", r)
	}
	servesCommitted(t, bootCouchDB(t, filepath.Join(target, "couchdb"), "medic", h.tree.Password), committed)

	// Shard files lost on the live host come back with an in-place restore.
	lost, _ := filepath.Glob(filepath.Join(h.tree.CouchDBData, "shards", "*", "medic.*.couch"))
	if len(lost) != 12 {
		t.Fatalf("medic has q=12, found %d shard files: %v", len(lost), lost)
	}
	for _, p := range lost[:5] {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	r = w.run(w.restoreArgs(h, "latest", "--in-place", "--yes")...)
	t.Logf("restore --in-place:\n%s", r)
	if r.code != 0 {
		t.Fatalf("restore --in-place of a good archive of a live CouchDB must pass:\n%s", r)
	}
	if !strings.Contains(r.stdout, "couchdb drill: passed") {
		t.Errorf("restore --in-place must run the CouchDB drill before it stops CHT:\n%s", r)
	}
	noDrillLeftovers(t)
	for _, p := range lost[:5] {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("shard file %s is not back: %v", p, err)
		}
	}
	h.containers.CouchURL = h.containers.WaitCouchDB(t, context.Background())
	servesCommitted(t, h.containers.CouchFor(h.tree), committed)
}

// SIGTERM while CouchDB runs on the copy: exit 130, and the drill's container, its network and
// the scratch copy are gone all the same.
func TestVerifyDrillInterruptedLeavesNothing(t *testing.T) {
	w := newWorld(t)
	h, couch := newRealCHTHost(t, w)
	couch.Must(t, "PUT", "/medic?q=4", nil, nil)
	couch.Must(t, "POST", "/medic/_bulk_docs", map[string]any{"docs": []map[string]any{{"_id": "a"}, {"_id": "b"}}}, nil)
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)

	cmd := w.command(w.verifyArgs()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cli := sourcestest.DockerClient(t)
	label := filters.NewArgs(filters.Arg("label", "cht-backup.drill-pid="+strconv.Itoa(cmd.Process.Pid)))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cs, _ := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: label})
		if len(cs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("verify never started its CouchDB drill container")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("verify stopped by SIGTERM during the drill: exit %d, want 130", code)
	}
	if cs, _ := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: label}); len(cs) != 0 {
		t.Errorf("drill container left behind: %v", cs[0].Names)
	}
	if ns, _ := cli.NetworkList(context.Background(), network.ListOptions{Filters: label}); len(ns) != 0 {
		t.Errorf("drill network left behind: %s", ns[0].Name)
	}
	if left, _ := os.ReadDir(filepath.Join(w.stateDir, "verify")); len(left) != 0 {
		t.Errorf("scratch copy left behind: %v", left)
	}
}

// COUCHDB_DATA naming another directory than the one the running CouchDB mounts: the backup fails
// (exit 2), names both paths, and archives nothing; a stale copy is never archived in silence.
func TestBackupRefusesCOUCHDB_DATAThatIsNotTheLiveMount(t *testing.T) {
	w := newWorld(t)
	h, _ := newRealCHTHost(t, w)
	stale := filepath.Join(w.dir, "old-couchdb")
	if err := os.MkdirAll(filepath.Join(stale, "shards"), 0o755); err != nil {
		t.Fatal(err)
	}
	env, _ := os.ReadFile(h.tree.EnvFile)
	if err := os.WriteFile(h.tree.EnvFile, []byte(strings.ReplaceAll(string(env), "COUCHDB_DATA="+h.tree.CouchDBData, "COUCHDB_DATA="+stale)), 0o600); err != nil {
		t.Fatal(err)
	}
	w.mustInit(t, w.remoteRepo())
	r := w.run(w.backupArgs(h)...)
	if r.code != 2 || !strings.Contains(r.stderr, stale) || !strings.Contains(r.stderr, h.tree.CouchDBData) {
		t.Fatalf("want exit 2 naming %s and %s:\n%s", stale, h.tree.CouchDBData, r)
	}
	if names := archiveNames(t, w, w.remoteRepo()); len(names) != 0 {
		t.Fatalf("nothing may be archived, found %v", names)
	}
}

// catchCompaction makes the real CouchDB begin compacting medic and freezes it while the
// compaction's files sit beside their live shard files: CouchDB gets a twentieth of a CPU so the
// compaction lasts, and it is paused once a .couch.compact.data file holds data. It returns the
// compaction files beside their live file; t.Cleanup unpauses CouchDB.
func catchCompaction(t *testing.T, cs *sourcestest.Containers, c *sourcestest.Couch, dataDir string) []string {
	t.Helper()
	ctx := context.Background()
	id := cs.CouchDB.ID
	limit := func(nano int64) {
		if _, err := cs.Client.ContainerUpdate(ctx, id, container.UpdateConfig{Resources: container.Resources{NanoCPUs: nano}}); err != nil {
			t.Fatalf("limiting CouchDB's CPU: %v", err)
		}
	}
	unlimited := int64(runtime.NumCPU()) * 1e9
	t.Cleanup(func() {
		cs.Client.ContainerUnpause(ctx, id)
		limit(unlimited)
	})
	// inProgress lists the compaction files of medic beside their live shard file; withData
	// says whether a .compact.data among them holds data.
	inProgress := func() (files []string, withData bool) {
		all, _ := filepath.Glob(filepath.Join(dataDir, "shards", "*", "medic.*.couch*"))
		files = sources.CompactionLeftovers(all)
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil && strings.HasSuffix(f, ".compact.data") && fi.Size() > 0 {
				withData = true
			}
		}
		return files, withData
	}
	// pause freezes CouchDB. The freezer can fail ("unable to freeze") on a cgroup held that low,
	// so the limit is lifted first, and a failed attempt is tried again.
	pause := func() {
		limit(unlimited)
		var err error
		for range 20 {
			if err = cs.Client.ContainerPause(ctx, id); err == nil {
				return
			}
			t.Logf("pausing CouchDB, again in 100 ms: %v", err)
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("pausing CouchDB: %v", err)
	}
	limit(5e7)
	deadline := time.Now().Add(90 * time.Second)
	for next := time.Now(); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(next) { // again, in case the last one ended unseen
			c.Must(t, "POST", "/medic/_compact", map[string]any{}, nil)
			next = time.Now().Add(3 * time.Second)
		}
		if _, ok := inProgress(); !ok {
			continue
		}
		pause()
		if held, ok := inProgress(); ok {
			return held
		}
		// The compaction ended before the freezer took: let CouchDB go on and try again.
		if err := cs.Client.ContainerUnpause(ctx, id); err != nil {
			t.Fatal(err)
		}
		limit(5e7)
	}
	t.Fatal("CouchDB's compaction of medic never showed a .compact.data file with data in 90 s")
	return nil
}

// A compaction CouchDB begins after the backup gathered its exclusions is archived: its files
// are beside their live files in the archive, read at another moment. verify and both restores
// leave them out and say so; CouchDB opens what they restore and serves every document committed
// before the backup.
func TestCompactionBegunWhileBorgReadsIsLeftOutOfRestores(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h, couch := newRealCHTHost(t, w)
	seedCHT(t, couch)
	w.mustInit(t, w.remoteRepo())
	committed := committedRevs(t, couch, "medic", "medic-sentinel", "_users")

	lr := w.start(t, []string{restore.TestHoldEnv + "=gather"}, w.backupArgs(h)...)
	lr.waitLine("test hold after gathering")
	caught := catchCompaction(t, h.containers, couch, h.tree.CouchDBData)
	if err := lr.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	r := lr.finish()
	t.Logf("backup, CouchDB paused with %d compaction files that were not there when it gathered:\n%s", len(caught), r)
	if r.code != 0 {
		t.Fatalf("a backup of a paused CouchDB must succeed:\n%s", r)
	}
	if err := h.containers.Client.ContainerUnpause(context.Background(), h.containers.CouchDB.ID); err != nil {
		t.Fatal(err)
	}
	isCompactionFile := func(p string) bool { return strings.Contains(p, ".couch.compact") }

	// The drill leaves them out, and CouchDB opens the copy.
	r = w.run(w.verifyArgs("--json", "--couchdb", "always")...)
	var vres []restore.VerifyResult
	if err := json.Unmarshal([]byte(r.stdout), &vres); err != nil || len(vres) != 1 {
		t.Fatalf("verify --json: %v\n%s", err, r)
	}
	v := vres[0]
	if r.code != 0 || !v.OK || v.CouchDB == nil || !v.CouchDB.OK() {
		t.Fatalf("verify must pass with the compaction files left out:\n%s", r)
	}
	if len(v.CompactionDropped) == 0 {
		t.Fatalf("the archive holds compaction files beside their live files (%q were on disk), the drill dropped none:\n%s", caught, r)
	}
	for _, p := range v.CompactionDropped {
		if !isCompactionFile(p) || !strings.Contains(p, "/shards/") {
			t.Errorf("dropped %s, which is no medic shard's compaction file", p)
		}
	}

	// restore --target leaves them out too, says so, and the manifest shows the backup never saw
	// them when it gathered.
	target := filepath.Join(w.dir, "restored")
	r = w.run(w.restoreArgs(h, "latest", "--target", target)...)
	t.Logf("restore --target:\n%s", r)
	if r.code != 0 || !strings.Contains(r.stdout, "of a compaction CouchDB began while borg read left out") {
		t.Fatalf("restore --target must pass and say what it left out:\n%s", r)
	}
	left, _ := filepath.Glob(filepath.Join(target, "couchdb", "shards", "*", "medic.*.couch.compact*"))
	if len(left) > 0 {
		t.Errorf("compaction files restored beside their live files: %q", left)
	}
	m, err := sources.ReadManifest(filepath.Join(target, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Compaction.Files {
		for _, d := range v.CompactionDropped {
			if f == d {
				t.Errorf("%s was excluded when the backup gathered; this test needs one that was not", f)
			}
		}
	}
	servesCommitted(t, bootCouchDB(t, filepath.Join(target, "couchdb"), "medic", h.tree.Password), committed)

	// In place, after CHT's own compaction has ended or not: the same files are left out.
	r = w.run(w.restoreArgs(h, "latest", "--in-place", "--yes", "--json")...)
	var ires restore.InPlaceResult
	if err := json.Unmarshal([]byte(r.stdout), &ires); err != nil || r.code != 0 || !ires.OK {
		t.Fatalf("restore --in-place: %v\n%s", err, r)
	}
	if !slices.Equal(ires.CompactionDropped, v.CompactionDropped) {
		t.Errorf("restore --in-place dropped %q, the drill %q", ires.CompactionDropped, v.CompactionDropped)
	}
	h.containers.CouchURL = h.containers.WaitCouchDB(t, context.Background())
	servesCommitted(t, h.containers.CouchFor(h.tree), committed)
}
