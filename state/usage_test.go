package state

import (
	"math"
	"strings"
	"testing"
	"time"
)

const gib = int64(1) << 30

func ptr(n int64) *int64 { return &n }

// recordNights records one backup a night with the repository size and free space that
// sizeAt and freeAt give for night i.
func recordNights(t *testing.T, dir string, start time.Time, nights int, sizeAt func(int) int64, freeAt func(int) *int64) *File {
	t.Helper()
	var f *File
	for i := 0; i < nights; i++ {
		end := start.Add(time.Duration(i) * 24 * time.Hour)
		var err error
		f, err = Record(dir, Outcome{Job: JobBackup, Repository: "ssh://borg@b/./cht", Start: end.Add(-time.Minute), End: end,
			Usage: &UsageSample{Time: end, Bytes: sizeAt(i), FreeBytes: freeAt(i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestDaysUntilFullFromRecordedRuns(t *testing.T) {
	start := time.Date(2026, 11, 1, 2, 30, 0, 0, time.UTC)
	now := start.Add(10*24*time.Hour - time.Hour)
	tests := []struct {
		name     string
		size     func(int) int64
		free     func(int) *int64
		wantDays float64 // -1: no estimate
		perDay   float64 // repository growth, GiB a day
	}{
		{"repository grows 1 GiB a night on a disk with 50 GiB free at the start",
			func(i int) int64 { return 100*gib + int64(i)*gib }, func(i int) *int64 { return ptr(50*gib - int64(i)*gib) }, 41, 1},
		{"the disk fills faster than the repository grows (another user of the disk): the free space decides",
			func(i int) int64 { return 100*gib + int64(i)*gib }, func(i int) *int64 { return ptr(50*gib - 2*int64(i)*gib) }, 16, 1},
		{"free space unknown (forced-command key): growth only",
			func(i int) int64 { return 100*gib + int64(i)*gib }, func(int) *int64 { return nil }, -1, 1},
		{"nothing grows: never full",
			func(int) int64 { return 100 * gib }, func(int) *int64 { return ptr(50 * gib) }, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := recordNights(t, t.TempDir(), start, 10, tt.size, tt.free)
			g := f.Growth("ssh://borg@b/./cht", now)
			if g == nil || g.Samples != 10 {
				t.Fatalf("growth: %+v", g)
			}
			if got := g.BytesPerDay / float64(gib); math.Abs(got-tt.perDay) > 0.01 {
				t.Errorf("growth %.3f GiB/day, want %.0f", got, tt.perDay)
			}
			switch {
			case tt.wantDays < 0 && g.DaysUntilFull != nil:
				t.Errorf("days until full %.1f, want no estimate", *g.DaysUntilFull)
			case tt.wantDays >= 0 && (g.DaysUntilFull == nil || math.Abs(*g.DaysUntilFull-tt.wantDays) > 0.01):
				t.Errorf("days until full %v, want %.0f", g.DaysUntilFull, tt.wantDays)
			}
		})
	}
}

// Backups minutes apart on a disk others write to: the free space moves by noise, and a rate
// drawn from it would say "full today". No rate is given before the samples span a day.
func TestNoRateFromBackupsMinutesApart(t *testing.T) {
	start := time.Date(2026, 11, 1, 2, 30, 0, 0, time.UTC)
	f := &File{}
	for i, free := range []int64{80 * gib, 79 * gib, 80*gib - 1} {
		f.addUsage("r", UsageSample{Time: start.Add(time.Duration(i) * time.Minute), Bytes: gib + int64(i)<<20, FreeBytes: ptr(free)})
	}
	g := f.Growth("r", start.Add(time.Hour))
	if g == nil || g.Rated || g.DaysUntilFull != nil || g.BytesPerDay != 0 || g.Bytes != gib+2<<20 {
		t.Errorf("three backups within minutes: %+v; want the size and no rate", g)
	}
	f.addUsage("r", UsageSample{Time: start.Add(25 * time.Hour), Bytes: 2 * gib, FreeBytes: ptr(79 * gib)})
	if g := f.Growth("r", start.Add(26*time.Hour)); !g.Rated || g.DaysUntilFull == nil {
		t.Errorf("a day later the rate is known: %+v", g)
	}
}

func TestGrowthLooksAtTheLast30Days(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 9, 1, 2, 30, 0, 0, time.UTC)
	// 30 nights of fast growth, then 30 of slow: the estimate follows the recent nights.
	f := recordNights(t, dir, start, 60, func(i int) int64 {
		if i < 30 {
			return int64(i) * 10 * gib
		}
		return 300*gib + int64(i-30)*gib
	}, func(i int) *int64 { return nil })
	g := f.Growth("ssh://borg@b/./cht", start.Add(59*24*time.Hour+time.Hour))
	if g.Samples != 30 || math.Abs(g.BytesPerDay/float64(gib)-1) > 0.01 {
		t.Errorf("growth over the last 30 days: %d samples, %.2f GiB/day; want 30, 1", g.Samples, g.BytesPerDay/float64(gib))
	}
	if n := len(f.Usage["ssh://borg@b/./cht"]); n != 60 {
		t.Errorf("history holds %d samples, want 60", n)
	}
	one := &File{}
	one.addUsage("r", UsageSample{Time: start, Bytes: gib, FreeBytes: ptr(gib)})
	if g := one.Growth("r", start.Add(time.Hour)); g == nil || g.DaysUntilFull != nil {
		t.Errorf("one sample gives a size but no estimate: %+v", g)
	}
	for i := 0; i < maxUsageSamples+10; i++ {
		one.addUsage("r", UsageSample{Time: start.Add(time.Duration(i) * time.Hour), Bytes: gib})
	}
	if n := len(one.Usage["r"]); n != maxUsageSamples {
		t.Errorf("history not bounded: %d samples", n)
	}
}

func TestUsageMetrics(t *testing.T) {
	start := time.Now().Add(-10 * 24 * time.Hour)
	f := recordNights(t, t.TempDir(), start, 10, func(i int) int64 { return 100*gib + int64(i)*gib }, func(i int) *int64 { return ptr(50*gib - int64(i)*gib) })
	m := string(Metrics(f))
	for _, want := range []string{
		`cht_backup_repository_bytes{repository="ssh://borg@b/./cht"} 1.17037858816e+11`,
		`cht_backup_repository_free_bytes{repository="ssh://borg@b/./cht"} 4.4023414784e+10`,
		`cht_backup_repository_days_until_full{repository="ssh://borg@b/./cht"} 41`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// The growth rate is the least-squares slope: exact on a straight line, the best fit through
// scattered points, 0 when there is no time span to measure over.
func TestSlope(t *testing.T) {
	for _, tt := range []struct {
		t, v []float64
		want float64
	}{
		{[]float64{0, 1, 2}, []float64{0, 2, 4}, 2},
		{[]float64{10, 11, 12}, []float64{5, 3, 1}, -2},
		{[]float64{0, 1, 2}, []float64{0, 1, 5}, 2.5},
		{[]float64{1, 2, 4, 7}, []float64{3, 1, 6, 9}, 17.0 / 14},
		{[]float64{3, 3}, []float64{1, 9}, 0},
		{[]float64{3}, []float64{1}, 0},
	} {
		if got := slope(tt.t, tt.v); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("slope(%v, %v) = %v, want %v", tt.t, tt.v, got, tt.want)
		}
	}
}
