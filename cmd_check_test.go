package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// corruptLargestSegment flips bytes in the middle of the repository's largest segment file, as a
// failing disk on the backup server would.
func corruptLargestSegment(t *testing.T, repoPath string) string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(repoPath, "data", "*", "*"))
	sort.Slice(segs, func(i, j int) bool { return size(segs[i]) < size(segs[j]) })
	if len(segs) == 0 {
		t.Fatalf("no segment files under %s", repoPath)
	}
	seg := segs[len(segs)-1]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return seg
}

func size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func TestCheckPassesThenCatchesCorruption(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly, func(o *sourcestest.Options) { o.FileSize = 1 << 20 })
	w.mustInit(t, w.remoteRepo())
	if r := w.run(w.backupArgs(h)...); r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	args := append([]string{"check", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_FORCED_KEY"])...)
	if r := w.run(args...); r.code != 0 || !strings.Contains(r.stdout, "ok ") {
		t.Fatalf("check of a good repository:\n%s", r)
	}
	corruptLargestSegment(t, w.remoteRepoPath())
	r := w.run(args...)
	if r.code != 2 || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "checksum mismatch") {
		t.Fatalf("check must catch a corrupted segment:\n%s", r)
	}
	if !strings.Contains(r.stderr, "what to do:") {
		t.Errorf("no hint:\n%s", r)
	}
}
