package state

import (
	"testing"
	"time"
)

func TestServerKeyIsTrustedForAWeek(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 30, 2, 30, 0, 0, time.UTC)
	if _, err := Record(dir, Outcome{Job: JobBackup, Repository: "/r", Start: t0, End: t0.Add(time.Minute), Archives: 7}); err != nil {
		t.Fatal(err)
	}
	const login = "borg@backup:22 key /root/.ssh/id_ed25519"
	if err := RecordServerKey(dir, login, ServerKey{Forced: true, Learnt: t0}); err != nil {
		t.Fatal(err)
	}
	f, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, ok := f.ArchiveCount("/r"); !ok || n != 7 {
		t.Fatalf("recording a server key lost the recorded outcome: %+v", f)
	}
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{t0, true},
		{t0.Add(ServerKeyTrusted), true},
		{t0.Add(ServerKeyTrusted + time.Second), false}, // a week old: asked again
		{t0.Add(-time.Hour), false},                     // learnt "in the future": the clock moved, ask again
	} {
		k, ok := f.ServerKey(login, tt.at)
		if ok != tt.want || ok && !k.Forced {
			t.Errorf("at %v: %+v, %v; want trusted %v", tt.at, k, ok, tt.want)
		}
	}
	if _, ok := f.ServerKey("borg@other:22 key /root/.ssh/id_ed25519", t0); ok {
		t.Error("another login must not share the record")
	}
	// A later answer replaces the earlier one; a recorded job keeps it.
	if err := RecordServerKey(dir, login, ServerKey{Forced: false, Learnt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := Record(dir, Outcome{Job: JobCheck, Repository: "/r", Start: t0, End: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f, _ = Load(dir)
	if k, ok := f.ServerKey(login, t0.Add(2*time.Hour)); !ok || k.Forced {
		t.Fatalf("want the newer answer (not forced) kept: %+v %v", k, ok)
	}
}
