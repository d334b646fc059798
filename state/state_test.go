package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestRecordKeepsLastRunAndLastSuccessPerJobAndRepository(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2025, 3, 1, 2, 30, 0, 0, time.UTC)
	ok := Outcome{Job: JobBackup, Repository: "r1", Start: t0, End: t0.Add(time.Minute), Archive: "host-a",
		OriginalSize: 100, CompressedSize: 60, DeduplicatedSize: 10, Files: 7, Archives: 3}
	other := Outcome{Job: JobBackup, Repository: "r2", Start: t0, End: t0.Add(2 * time.Minute), Status: StatusWarning,
		Warnings: []string{"a: file changed while we backed it up"}}
	if _, err := Record(dir, ok, other); err != nil {
		t.Fatal(err)
	}
	failed := Outcome{Job: JobBackup, Repository: "r1", Start: t0.Add(24 * time.Hour), End: t0.Add(24*time.Hour + time.Second),
		Error: "borg create r1: connection closed\nmore", Hint: "check the network"}
	check := Outcome{Job: JobCheck, Repository: "r1", Start: t0, End: t0.Add(time.Hour), Archives: 4}
	f, err := Record(dir, failed, check)
	if err != nil {
		t.Fatal(err)
	}
	// What was written is what Load reads.
	g, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, g), mustJSON(t, f); a != b {
		t.Fatalf("Load differs from what Record returned:\n%+v\n%+v", g.Entries, f.Entries)
	}

	e := g.Find(JobBackup, "r1")
	if e == nil || e.LastRun.Status != StatusFailed || e.LastRun.ExitCode != 2 || e.LastRun.Error != "borg create r1: connection closed more" {
		t.Fatalf("last run of r1: %+v", e)
	}
	if e.LastSuccess == nil || e.LastSuccess.Archive != "host-a" || e.LastSuccess.OriginalSize != 100 || e.LastSuccess.Status != StatusOK {
		t.Fatalf("the failure must keep the last success: %+v", e.LastSuccess)
	}
	w := g.Find(JobBackup, "r2")
	if w == nil || w.LastRun.ExitCode != 1 || w.LastSuccess == nil || len(w.LastSuccess.Warnings) != 1 {
		t.Fatalf("a warning is a success with exit 1: %+v", w)
	}
	if n, at, ok := g.ArchiveCount("r1"); !ok || n != 4 || !at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("archive count of r1: %d at %s (%v), want 4 from the check", n, at, ok)
	}
	if _, _, ok := g.ArchiveCount("r2"); ok {
		t.Fatal("r2's archives were never counted")
	}
	if got := strings.Join(g.Repositories(), ","); got != "r1,r2" {
		t.Fatalf("repositories: %s", got)
	}
	if st, _ := os.Stat(Path(dir)); st.Mode().Perm() != 0o644 {
		t.Errorf("state file mode %v", st.Mode())
	}
}

func TestRecordCapsWarnings(t *testing.T) {
	dir := t.TempDir()
	var ws []string
	for i := 0; i < 500; i++ {
		ws = append(ws, fmt.Sprintf("file %d changed", i))
	}
	f, err := Record(dir, Outcome{Job: JobBackup, Repository: "r", Status: StatusWarning, Warnings: ws})
	if err != nil {
		t.Fatal(err)
	}
	got := f.Find(JobBackup, "r").LastRun.Warnings
	if len(got) != maxWarnings || got[len(got)-1] != "... and 481 more" || ws[0] != "file 0 changed" {
		t.Fatalf("warnings: %d, last %q", len(got), got[len(got)-1])
	}
	// Exactly as many as are kept: all of them, no summary line.
	f, err = Record(dir, Outcome{Job: JobBackup, Repository: "r", Status: StatusWarning, Warnings: ws[:maxWarnings]})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Find(JobBackup, "r").LastRun.Warnings; len(got) != maxWarnings || got[len(got)-1] != ws[maxWarnings-1] {
		t.Fatalf("%d warnings kept as %d, last %q", maxWarnings, len(got), got[len(got)-1])
	}
	// An error line is cut at maxLineBytes, one at the limit is kept whole.
	for n, want := range map[int]int{maxLineBytes: maxLineBytes, maxLineBytes + 1: maxLineBytes + len("…")} {
		f, err = Record(dir, Outcome{Job: JobBackup, Repository: "r", Error: strings.Repeat("e", n)})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Find(JobBackup, "r").LastRun.Error; len(got) != want {
			t.Errorf("an error of %d bytes recorded as %d, want %d", n, len(got), want)
		}
	}
}

// Readers never see a partial state file, however often it is rewritten.
func TestStateFileIsReplacedAtomically(t *testing.T) {
	dir := t.TempDir()
	big := make([]string, maxWarnings)
	for i := range big {
		big[i] = strings.Repeat("x", 900)
	}
	if _, err := Record(dir, Outcome{Job: JobBackup, Repository: "r"}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(Path(dir))
				reads.Add(1)
				var f File
				if err != nil || json.Unmarshal(b, &f) != nil || len(f.Entries) == 0 {
					bad.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 30; i++ {
		if _, err := Record(dir, Outcome{Job: JobBackup, Repository: fmt.Sprintf("r%d", i%7), Status: StatusWarning, Warnings: big}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d reads saw a missing or partial state file", bad.Load(), reads.Load())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// A write that fails halfway leaves the old file untouched and no temporary file.
func TestWriteFileAtomicFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	os.WriteFile(path, []byte("old"), 0o644)
	err := WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		w.Write([]byte("half of the n"))
		return errors.New("disk full")
	})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("want the write's error, got %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("old file changed: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary file left: %v", entries)
	}
}

func TestDamagedStateFileIsSetAside(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(Path(dir), []byte(`{"version":1,"entries":[{"job":`), 0o644)
	if _, err := Load(dir); !errors.As(err, new(*CorruptError)) {
		t.Fatalf("Load of a damaged file: %v", err)
	}
	f, err := Record(dir, Outcome{Job: JobBackup, Repository: "r"})
	var ce *CorruptError
	if !errors.As(err, &ce) || f == nil || !strings.HasPrefix(ce.SetAside, Path(dir)+".damaged-") {
		t.Fatalf("Record must start afresh and say so: %v %+v", err, f)
	}
	if b, _ := os.ReadFile(ce.SetAside); !strings.HasPrefix(string(b), `{"version":1`) {
		t.Fatalf("damaged file not kept: %q", b)
	}
	// Damaged again (in the same second): the first set-aside copy is kept too.
	os.WriteFile(Path(dir), []byte(`not json`), 0o644)
	_, err = Record(dir, Outcome{Job: JobBackup, Repository: "r"})
	var ce2 *CorruptError
	if !errors.As(err, &ce2) || ce2.SetAside == ce.SetAside {
		t.Fatalf("a second damaged file overwrote the first: %v", err)
	}
	if b, _ := os.ReadFile(ce.SetAside); !strings.HasPrefix(string(b), `{"version":1`) {
		t.Fatalf("the first damaged file was lost: %q", b)
	}
	if b, _ := os.ReadFile(ce2.SetAside); string(b) != "not json" {
		t.Fatalf("the second damaged file was not kept: %q", b)
	}
	if g, err := Load(dir); err != nil || g.Find(JobBackup, "r") == nil {
		t.Fatalf("new state: %+v %v", g, err)
	}
}

func TestLoadMissingFileIsEmpty(t *testing.T) {
	f, err := Load(filepath.Join(t.TempDir(), "nothing-here"))
	if err != nil || len(f.Entries) != 0 {
		t.Fatalf("%+v %v", f, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMakeDirLetsOthersPassThroughOnly(t *testing.T) {
	old := syscall.Umask(0o077) // a strict umask must not take the pass-through away
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "state")
	if err := MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != DirMode {
		t.Fatalf("state dir mode %v (%v), want %v", st.Mode().Perm(), err, os.FileMode(DirMode))
	}
	if err := MakeDir(dir); err != nil {
		t.Fatalf("MakeDir on an existing dir: %v", err)
	}
}

func TestCompleteDerivesStatusAndExitCode(t *testing.T) {
	tests := []struct {
		in         Outcome
		wantStatus Status
		wantCode   int
	}{
		{Outcome{}, StatusOK, 0},
		{Outcome{Warnings: []string{"x: file changed while we backed it up"}}, StatusWarning, 1},
		{Outcome{Error: "borg create failed", Warnings: []string{"x"}}, StatusFailed, 2},
		{Outcome{Error: "interrupted", ExitCode: 130}, StatusFailed, 130},
		{Outcome{Status: StatusOK}, StatusOK, 0},
	}
	for i, tt := range tests {
		got := Complete(tt.in)
		if got.Status != tt.wantStatus || got.ExitCode != tt.wantCode || got.End.IsZero() || got.Start.IsZero() {
			t.Errorf("%d: %+v -> status %q code %d", i, tt.in, got.Status, got.ExitCode)
		}
	}
}

// An archive count learnt outside a job counts when it is the newest, and survives the next
// recorded job; an older one gives way to a job's newer count.
func TestRecordArchiveCount(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 30, 2, 30, 0, 0, time.UTC)
	if _, err := Record(dir, Outcome{Job: JobBackup, Repository: "/r", Start: t0, End: t0.Add(time.Minute), Archives: 7}); err != nil {
		t.Fatal(err)
	}
	if err := RecordArchiveCount(dir, "/r", 9, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, at, ok := f.ArchiveCount("/r"); !ok || n != 9 || !at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("count %d at %s (%v), want 9 from the listing", n, at, ok)
	}
	if _, err := Record(dir, Outcome{Job: JobCheck, Repository: "/other", Start: t0, End: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if f, _ = Load(dir); f.Counts["/r"].Archives != 9 {
		t.Fatalf("a recorded job dropped the listed count: %+v", f.Counts)
	}
	if _, err := Record(dir, Outcome{Job: JobBackup, Repository: "/r", Start: t0.Add(3 * time.Hour), End: t0.Add(3*time.Hour + time.Minute), Archives: 10}); err != nil {
		t.Fatal(err)
	}
	if f, _ = Load(dir); func() int { n, _, _ := f.ArchiveCount("/r"); return n }() != 10 {
		t.Fatalf("the newer backup's count must win: %+v", f)
	}
}
