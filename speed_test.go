package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
)

// archiveChunkerParams is what borg recorded in an archive's metadata as its chunker params.
func archiveChunkerParams(t *testing.T, w *world, repo, archive string) string {
	t.Helper()
	out, err := runWithPassphrase(w, []string{"borg", "info", "--json", repo + "::" + archive})
	if err != nil {
		t.Fatalf("borg info: %v\n%s", err, out)
	}
	var info struct {
		Archives []struct {
			ChunkerParams []any `json:"chunker_params"`
		} `json:"archives"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Archives) != 1 {
		t.Fatalf("borg info output: %v\n%s", err, out)
	}
	b, _ := json.Marshal(info.Archives[0].ChunkerParams)
	return strings.NewReplacer("[", "", "]", "", `"`, "").Replace(string(b))
}

// localBackup backs up a container-less CHT tree to repo and returns the report.
func localBackup(t *testing.T, w *world, chtDir, repo string, extra ...string) (BackupReport, result) {
	t.Helper()
	time.Sleep(1100 * time.Millisecond) // archive names have whole seconds
	args := append([]string{"backup", "--json", "--repo", repo, "--cht-dir", chtDir, "--skip", "tls,credentials"}, w.common("")...)
	r := w.run(append(args, extra...)...)
	if r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	return decodeReport(t, r), r
}

func recordedChunking(t *testing.T, w *world, repo string) state.Chunking {
	t.Helper()
	all, err := state.LoadChunking(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	return all[repo]
}

// A repository made by init gets CouchDB's chunker params from its first archive on; one made
// before (by hand, or by an older cht-backup, with borg's defaults) keeps its params; a change
// happens only when asked, says what it costs, and sticks.
func TestChunkerParamsNewRepositoryCouchDBExistingKept(t *testing.T) {
	w := newWorld(t)
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"))

	fresh := filepath.Join(w.dir, "fresh")
	w.mustInit(t, fresh)
	rep, _ := localBackup(t, w, tree.Root, fresh)
	if got := archiveChunkerParams(t, w, fresh, rep.Archive); got != borg.CouchDBChunkerParams {
		t.Fatalf("a new repository's archive was cut with %s, want %s", got, borg.CouchDBChunkerParams)
	}
	if rep.Repositories[0].ChunkerParams != borg.CouchDBChunkerParams {
		t.Fatalf("report: %+v", rep.Repositories[0])
	}

	// An existing repository with an archive of borg's defaults, unknown to this state dir.
	old := filepath.Join(w.dir, "old")
	if out, err := runWithPassphrase(w, []string{"borg", "init", "--encryption", "repokey-blake2", old}); err != nil {
		t.Fatalf("borg init: %v\n%s", err, out)
	}
	if out, err := runWithPassphrase(w, []string{"borg", "create", old + "::by-hand", tree.EnvFile}); err != nil {
		t.Fatalf("borg create: %v\n%s", err, out)
	}
	for i := 0; i < 2; i++ { // the first run reads the newest archive, the second the record
		rep, _ = localBackup(t, w, tree.Root, old)
		if got := archiveChunkerParams(t, w, old, rep.Archive); got != borg.BorgDefaultChunkerParams {
			t.Fatalf("run %d: an existing repository's archive was cut with %s, want its own %s", i+1, got, borg.BorgDefaultChunkerParams)
		}
		if c := recordedChunking(t, w, old); c.Params != borg.BorgDefaultChunkerParams || c.Source != "newest archive" {
			t.Fatalf("run %d: recorded %+v", i+1, c)
		}
	}
	// The record wins over the newest archive: an archive made by hand with other params does
	// not change what cht-backup uses.
	if out, err := runWithPassphrase(w, []string{"borg", "create", "--chunker-params", "buzhash,10,23,16,4095", old + "::by-hand-2", tree.EnvFile}); err != nil {
		t.Fatalf("borg create: %v\n%s", err, out)
	}
	rep, _ = localBackup(t, w, tree.Root, old)
	if got := archiveChunkerParams(t, w, old, rep.Archive); got != borg.BorgDefaultChunkerParams {
		t.Fatalf("after an archive made by hand, cut with %s, want the recorded %s", got, borg.BorgDefaultChunkerParams)
	}

	// The user asks for CouchDB's: this archive and every later one use them, and the run says
	// what the change costs.
	time.Sleep(1100 * time.Millisecond)
	args := append([]string{"backup", "--repo", old, "--cht-dir", tree.Root, "--skip", "tls,credentials", "--chunker-params", "buzhash,14,18,16,4095"}, w.common("")...)
	r := w.run(args...)
	if r.code != 0 || !strings.Contains(r.stdout, "chunker params change from "+borg.BorgDefaultChunkerParams+" to "+borg.CouchDBChunkerParams) ||
		!strings.Contains(r.stdout, "stores every file once more") {
		t.Fatalf("changing the chunker params:\n%s", r)
	}
	rep, _ = localBackup(t, w, tree.Root, old)
	if got := archiveChunkerParams(t, w, old, rep.Archive); got != borg.CouchDBChunkerParams {
		t.Fatalf("after the change, cut with %s, want %s", got, borg.CouchDBChunkerParams)
	}
	if rep.Repositories[0].ChunkerChange != "" {
		t.Fatalf("the change is reported again: %+v", rep.Repositories[0])
	}

	// A bad value is a usage error that writes nothing.
	args = append([]string{"backup", "--repo", old, "--cht-dir", tree.Root, "--skip", "tls,credentials", "--chunker-params", "buzhash,14,18,20,4095"}, w.common("")...)
	if r := w.run(args...); r.code != 3 || !strings.Contains(r.stderr, "MIN_EXP <= MASK_BITS <= MAX_EXP") {
		t.Fatalf("bad --chunker-params:\n%s", r)
	}

	// A damaged record is said, left for the user to look at, and the params come from the
	// newest archive: the repository keeps cutting files as its archives were cut.
	record := filepath.Join(w.stateDir, state.ChunkingFileName)
	if err := os.WriteFile(record, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	args = append([]string{"backup", "--repo", old, "--cht-dir", tree.Root, "--skip", "tls,credentials", "--json"}, w.common("")...)
	r = w.run(args...)
	t.Logf("backup with a damaged record:\n%s", r)
	var damaged BackupReport
	if err := json.Unmarshal([]byte(r.stdout), &damaged); err != nil || r.code != 0 || len(lines(r.stderr, "is damaged")) == 0 {
		t.Fatalf("a backup with a damaged %s must pass and say so: %v\n%s", state.ChunkingFileName, err, r)
	}
	if got := archiveChunkerParams(t, w, old, damaged.Archive); got != borg.CouchDBChunkerParams {
		t.Fatalf("with a damaged record, cut with %s, want the newest archive's %s", got, borg.CouchDBChunkerParams)
	}
	if b, _ := os.ReadFile(record); string(b) != "{not json" {
		t.Errorf("the damaged record was overwritten: %q", b)
	}
}

// A backup counts the repository's archives from the state (the last count plus the one it
// made) instead of listing the whole repository; a check, which lists anyway, sets it right.
func TestBackupArchiveCountFromStateNotListing(t *testing.T) {
	w := newWorld(t)
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"))
	repo := filepath.Join(w.dir, "repo")
	w.mustInit(t, repo)
	count := func() int {
		t.Helper()
		f, err := state.Load(w.stateDir)
		if err != nil {
			t.Fatal(err)
		}
		n, _, _ := f.ArchiveCount(repo)
		return n
	}
	localBackup(t, w, tree.Root, repo)
	if n := count(); n != 1 {
		t.Fatalf("after the first backup the state counts %d archives, want 1", n)
	}
	// A count the state learnt elsewhere is carried on, not listed again: the repository holds
	// 2 archives after the next backup, the state says 7+1.
	if _, err := state.Record(w.stateDir, state.Outcome{Job: state.JobCheck, Repository: repo, Archives: 7}); err != nil {
		t.Fatal(err)
	}
	localBackup(t, w, tree.Root, repo)
	if n := count(); n != 8 {
		t.Fatalf("after a backup the state counts %d archives, want 8 (7 recorded + 1)", n)
	}
	if r := w.run(append([]string{"check", "--repo", repo}, w.common("")...)...); r.code != 0 {
		t.Fatalf("check:\n%s", r)
	}
	if n := count(); n != 2 {
		t.Fatalf("after a check the state counts %d archives, want the 2 the repository holds", n)
	}
	// verify lists the archives to find `latest`, so it puts the count right too.
	if _, err := state.Record(w.stateDir, state.Outcome{Job: state.JobCheck, Repository: repo, Archives: 9}); err != nil {
		t.Fatal(err)
	}
	if r := w.run(append([]string{"verify", "--couchdb", "never", "--repo", repo}, w.common("")...)...); r.code != 0 {
		t.Fatalf("verify:\n%s", r)
	}
	if n := count(); n != 2 {
		t.Fatalf("after a verify the state counts %d archives, want the 2 the repository holds", n)
	}
}

// The borg version is asked once and then read from the state dir.
func TestBackupCachesBorgVersion(t *testing.T) {
	w := newWorld(t)
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"))
	repo := filepath.Join(w.dir, "repo")
	w.mustInit(t, repo)
	b, err := os.ReadFile(filepath.Join(w.stateDir, borgVersionCache))
	if err != nil || !strings.Contains(string(b), `"version":"1.`) {
		t.Fatalf("no borg version cached by init: %v %s", err, b)
	}
	// A cached answer is believed: a planted supported version shows in the manifest.
	key, err := borg.BinaryKeyOf("borg")
	if err != nil {
		t.Fatal(err)
	}
	planted, _ := json.Marshal(map[string]any{"key": key, "version": "1.4.99"})
	if err := os.WriteFile(filepath.Join(w.stateDir, borgVersionCache), planted, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, _ := localBackup(t, w, tree.Root, repo)
	out, err := runWithPassphrase(w, []string{"borg", "extract", "--stdout", repo + "::" + rep.Archive, "cht-backup/manifest.json"})
	if err != nil || !strings.Contains(out, `"borg_version": "1.4.99"`) {
		t.Fatalf("the manifest does not carry the cached version: %v\n%s", err, out)
	}
}

// A compaction in progress is left out of the archive when the live file is there, the
// manifest names the rule, and the archive verifies.
func TestBackupLeavesOutCompactionInProgress(t *testing.T) {
	w := newWorld(t)
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"))
	repo := filepath.Join(w.dir, "repo")
	w.mustInit(t, repo)
	var shard string
	for _, f := range tree.CouchFiles {
		if strings.Contains(f, "/shards/") {
			shard = f
			break
		}
	}
	for _, suf := range []string{".compact.data", ".compact.meta"} {
		if err := os.WriteFile(shard+suf, make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, _ := localBackup(t, w, tree.Root, repo)
	paths := strings.Join(archivePaths(t, w, repo, rep.Archive), "\n")
	if strings.Contains(paths, ".compact.") || !strings.Contains(paths, strings.TrimPrefix(shard, "/")) {
		t.Fatalf("archive paths:\n%s", paths)
	}
	out, err := runWithPassphrase(w, []string{"borg", "extract", "--stdout", repo + "::" + rep.Archive, "cht-backup/manifest.json"})
	if err != nil || !strings.Contains(out, `"compaction_excluded"`) || !strings.Contains(out, strings.TrimPrefix(shard, "/")+".compact.data") {
		t.Fatalf("manifest: %v\n%s", err, out)
	}
	if r := w.run(append([]string{"verify", "latest", "--repo", repo}, w.common("")...)...); r.code != 0 {
		t.Fatalf("verify:\n%s", r)
	}
}
