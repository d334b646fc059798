package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
)

// sshSessions counts the SSH sessions the test sshd started, by its log since offset, on
// connections from the given client ports.
func sshSessions(t *testing.T, logFile string, offset int64, ports []int) int {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`Starting session: .* from 127\.0\.0\.1 port (\d+) id \d+`)
	n := 0
	for _, m := range re.FindAllSubmatch(b[offset:], -1) {
		if p, _ := strconv.Atoi(string(m[1])); slices.Contains(ports, p) {
			n++
		}
	}
	return n
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A server that forces the key to borg serve is learnt to do so by init, and a backup then opens
// a single SSH session there, borg create's: asking the server for its free space would start
// borg serve once more, about half a second of CPU for nothing. After a week the backup asks
// again, and records the answer anew.
func TestBackupDoesNotAskAForcedServerAgain(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	sshdLog := filepath.Join(testEnv["TESTENV_DIR"], "sshd.log")
	p, repo, common := proxiedRepo(t, w, testEnv["SSH_FORCED_KEY"])
	login := fmt.Sprintf("%s@%s:%d key %s", testEnv["SSH_USER"], testEnv["SSH_HOST"], p.port, testEnv["SSH_FORCED_KEY"])
	learnt := func(after time.Time) {
		t.Helper()
		sf, err := state.Load(w.stateDir)
		if err != nil {
			t.Fatal(err)
		}
		k, ok := sf.ServerKeys[login]
		if !ok || !k.Forced || k.Learnt.Before(after) {
			t.Fatalf("want %q recorded as forced, learnt after %v; the state has %+v", login, after, sf.ServerKeys)
		}
	}
	learnt(time.Time{})

	backup := func() int {
		t.Helper()
		p.takeUpstream()
		offset := fileSize(t, sshdLog)
		if r := w.run(append([]string{"backup", "--repo", repo, "--cht-dir", h.tree.Root}, common...)...); r.code != 0 {
			t.Fatalf("backup:\n%s", r)
		}
		return sshSessions(t, sshdLog, offset, p.takeUpstream())
	}
	if n := backup(); n != 1 {
		t.Fatalf("want one SSH session on the forced server (borg create's), the log shows %d", n)
	}

	// A week later the record is no longer trusted: the backup asks, and records the answer.
	raw, err := os.ReadFile(state.Path(w.stateDir))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["server_keys"].(map[string]any)[login].(map[string]any)["learnt"] = time.Now().Add(-state.ServerKeyTrusted - time.Hour).UTC().Format(time.RFC3339)
	raw, _ = json.Marshal(doc)
	os.WriteFile(state.Path(w.stateDir), raw, 0o644)
	before := time.Now()
	if n := backup(); n != 2 {
		t.Fatalf("want two SSH sessions once the record is a week old (the question and borg create), the log shows %d", n)
	}
	learnt(before)
}

// borg create does not wait for the backup's own check of the server: it starts once the host is
// gathered, and connects while the check's connection is still held back by the proxy.
func TestBackupStartsBorgBeforeTheCheckAnswers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	p, repo, common := proxiedRepo(t, w, testEnv["SSH_FORCED_KEY"])
	p.mu.Lock()
	p.hold, p.accepted = 10*time.Second, 0
	p.mu.Unlock()
	r := w.run(append([]string{"backup", "--repo", repo, "--cht-dir", h.tree.Root}, common...)...)
	if r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.overlapped {
		t.Fatalf("borg create connected only after the check's connection was let through (%d connections)", p.accepted)
	}
}
