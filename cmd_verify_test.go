package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/restore"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

func (w *world) verifyArgs(args ...string) []string {
	out := append([]string{"verify"}, args...)
	out = append(out, "--repo", w.remoteRepo())
	return append(out, w.common(testEnv["SSH_SHELL_KEY"])...)
}

// corruptRepository flips bytes near the start of the repository's largest segment file on the
// server's disk, where borg wrote the first file's data: the archive's metadata (and so its
// manifest) stays readable, its data does not.
func corruptRepository(t *testing.T, repoPath string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(repoPath, "data", "*", "*"))
	var biggest string
	var size int64
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = s, fi.Size()
		}
	}
	if size < 4096 {
		t.Fatalf("no data segment in %s: %v", repoPath, segs)
	}
	f, err := os.OpenFile(biggest, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 16)
	f.ReadAt(b, 100)
	for i := range b {
		b[i] ^= 0xff
	}
	if _, err := f.WriteAt(b, 100); err != nil {
		t.Fatal(err)
	}
	return biggest
}

// verify passes on a good archive, reports each group, and leaves no scratch copy; after a
// segment file is damaged on the server it fails with the reason, and an in-place restore of that
// archive changes nothing.
func TestVerifyPassesThenCatchesCorruption(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	name := w.mustBackup(t, h)
	scratch := filepath.Join(w.stateDir, "verify")

	r := w.run(w.verifyArgs()...)
	if r.code != 0 || !strings.Contains(r.stdout, "verdict: OK") {
		t.Fatalf("verify of a good archive:\n%s", r)
	}
	t.Logf("verify:\n%s", r)
	noSecrets(t, h, r)
	for _, g := range []string{"couchdb-indexes", "couchdb", "env", "compose", "tls", "credentials"} {
		if len(lines(r.stdout, "ok      "+g+" ")) != 1 {
			t.Errorf("no ok line for group %s:\n%s", g, r)
		}
	}
	if fi, err := os.Stat(scratch); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("scratch parent %s must exist with mode 0700: %v", scratch, err)
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Errorf("scratch copy left behind: %v", left)
	}

	r = w.run(w.verifyArgs(name, "--json")...)
	var results []restore.VerifyResult
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil || r.code != 0 {
		t.Fatalf("verify --json: %v\n%s", err, r)
	}
	if len(results) != 1 || !results[0].OK || results[0].Archive != name || len(results[0].Groups) != 6 || results[0].Files == 0 {
		t.Fatalf("verify --json result: %+v", results)
	}

	if r := w.run(w.verifyArgs("no-such-archive")...); r.code != 2 || !strings.Contains(r.stderr, "no-such-archive") {
		t.Fatalf("verify of an unknown archive:\n%s", r)
	}
	if r := w.run(w.verifyArgs("a", "b")...); r.code != 3 {
		t.Fatalf("verify takes one archive:\n%s", r)
	}

	// SIGTERM while the drill runs: exit 130, and the scratch copy is gone all the same.
	cmd := w.command(w.verifyArgs()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if d, _ := filepath.Glob(filepath.Join(scratch, "drill-*")); len(d) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the drill never started")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("verify stopped by SIGTERM: exit %d, want 130", code)
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Errorf("scratch copy left behind after SIGTERM: %v", left)
	}

	seg := corruptRepository(t, w.remoteRepoPath())
	r = w.run(w.verifyArgs()...)
	t.Logf("verify after corrupting %s:\n%s", seg, r)
	if r.code != 2 || !strings.Contains(r.stdout, "verdict: FAILED") || !strings.Contains(r.stdout, "integrity") {
		t.Fatalf("verify must fail with the reason after corruption:\n%s", r)
	}
	if !strings.Contains(r.stderr, "what to do:") {
		t.Errorf("no hint:\n%s", r)
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Errorf("scratch copy left behind after a failed drill: %v", left)
	}

	// The archive cannot be extracted, so an in-place restore stops before it touches anything.
	envBefore, _ := os.ReadFile(h.tree.EnvFile)
	r = w.run(w.restoreArgs(h, "latest", "--in-place", "--yes")...)
	if r.code != 2 || !strings.Contains(r.stdout, "nothing on this host was changed") {
		t.Fatalf("in-place restore of a damaged archive:\n%s", r)
	}
	if got, _ := os.ReadFile(h.tree.EnvFile); string(got) != string(envBefore) {
		t.Error("a failed extraction changed .env")
	}
	if aside, _ := filepath.Glob(filepath.Join(h.tree.Root, "*.before-restore-*")); len(aside) != 0 {
		t.Errorf("nothing should have been moved aside: %v", aside)
	}
	if !running(t, h.containers.Client, h.containers.Nginx.ID) || !running(t, h.containers.Client, h.containers.CouchDB.ID) {
		t.Error("a failed extraction must not stop the containers")
	}
}
