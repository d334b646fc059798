package state

import (
	"math"
	"sort"
	"time"
)

// UsageSample is what one backup learnt of its repository's size and of the free space left
// where it lives. FreeBytes is nil when nothing could tell (a remote repository reached through
// a forced-command key, which runs borg serve and nothing else).
type UsageSample struct {
	Time      time.Time `json:"time"`
	Bytes     int64     `json:"bytes"`
	FreeBytes *int64    `json:"free_bytes,omitempty"`
}

// maxUsageSamples bounds the history kept per repository: two nightly backups a day for
// two months.
const maxUsageSamples = 120

// growthWindow is how far back the growth estimate looks: long enough to smooth the nights,
// short enough to follow a change (a new programme, a retention change).
const growthWindow = 30 * 24 * time.Hour

// minGrowthSpan is the least time the samples must span before a rate is given: backups minutes
// apart (a first day of tests, manual runs) would turn noise in the free space into "full today".
const minGrowthSpan = 24 * time.Hour

// Growth is the estimate status and the metrics show for one repository.
type Growth struct {
	Samples int       `json:"samples"`
	Since   time.Time `json:"since"`
	// Rated: the samples span at least a day, so the rates below mean something; else they are 0.
	Rated       bool    `json:"rated"`
	Bytes       int64   `json:"bytes"`                // at the last sample
	FreeBytes   *int64  `json:"free_bytes,omitempty"` // at the last sample
	BytesPerDay float64 `json:"bytes_per_day"`        // growth of the repository
	// FillPerDay is how fast the free space goes: its own fall where it was measured twice,
	// else the repository's growth. DaysUntilFull is nil when the free space is unknown or
	// nothing grows.
	FillPerDay    float64  `json:"fill_bytes_per_day"`
	DaysUntilFull *float64 `json:"days_until_full,omitempty"`
}

func (f *File) addUsage(repository string, s UsageSample) {
	if f.Usage == nil {
		f.Usage = map[string][]UsageSample{}
	}
	s.Time = s.Time.UTC()
	h := append(f.Usage[repository], s)
	sort.SliceStable(h, func(i, j int) bool { return h[i].Time.Before(h[j].Time) })
	if len(h) > maxUsageSamples {
		h = h[len(h)-maxUsageSamples:]
	}
	f.Usage[repository] = h
}

// Growth estimates, from the samples of the last 30 days before now, how fast the repository
// grows and when its disk is full. nil when no backup recorded a size.
func (f *File) Growth(repository string, now time.Time) *Growth {
	all := f.Usage[repository]
	if len(all) == 0 {
		return nil
	}
	var h []UsageSample
	for _, s := range all {
		if !s.Time.Before(now.Add(-growthWindow)) && !s.Time.After(now) {
			h = append(h, s)
		}
	}
	if len(h) == 0 {
		h = all[len(all)-1:]
	}
	last := h[len(h)-1]
	g := &Growth{Samples: len(h), Since: h[0].Time, Bytes: last.Bytes, FreeBytes: last.FreeBytes}
	var bt, bv, ft, fv []float64
	for _, s := range h {
		day := s.Time.Sub(h[0].Time).Hours() / 24
		bt, bv = append(bt, day), append(bv, float64(s.Bytes))
		if s.FreeBytes != nil {
			ft, fv = append(ft, day), append(fv, float64(*s.FreeBytes))
		}
	}
	if last.Time.Sub(h[0].Time) < minGrowthSpan {
		return g
	}
	g.Rated = true
	g.BytesPerDay = slope(bt, bv)
	g.FillPerDay = g.BytesPerDay
	if len(ft) >= 2 && ft[len(ft)-1] > ft[0] {
		g.FillPerDay = -slope(ft, fv)
	}
	if g.FreeBytes != nil && g.FillPerDay > 0 {
		d := float64(*g.FreeBytes) / g.FillPerDay
		g.DaysUntilFull = &d
	}
	return g
}

// slope is the least-squares slope of v over t; 0 with fewer than two distinct times.
func slope(t, v []float64) float64 {
	n := float64(len(t))
	if len(t) < 2 {
		return 0
	}
	var st, sv float64
	for i := range t {
		st += t[i]
		sv += v[i]
	}
	mt, mv := st/n, sv/n
	var num, den float64
	for i := range t {
		num += (t[i] - mt) * (v[i] - mv)
		den += (t[i] - mt) * (t[i] - mt)
	}
	if den == 0 || math.IsNaN(num/den) {
		return 0
	}
	return num / den
}

// usageFamilies are the repository-size metrics: the last recorded size and free space, and
// the days until the disk is full (absent when that cannot be estimated).
func usageFamilies(f *File, now time.Time) []*metricFamily {
	fam := func(name, help string) *metricFamily { return &metricFamily{name: "cht_backup_" + name, help: help} }
	size := fam("repository_bytes", "Size of the repository at the last backup that could tell (deduplicated and compressed; on-disk size for a local repository).")
	free := fam("repository_free_bytes", "Free space where the repository lives, at the last backup that could tell.")
	days := fam("repository_days_until_full", "Days until the repository's disk is full at the growth of the last 30 days.")
	for _, repo := range f.Repositories() {
		g := f.Growth(repo, now)
		if g == nil {
			continue
		}
		l := [][2]string{{"repository", repo}}
		size.add(l, float64(g.Bytes))
		if g.FreeBytes != nil {
			free.add(l, float64(*g.FreeBytes))
		}
		if g.DaysUntilFull != nil {
			days.add(l, *g.DaysUntilFull)
		}
	}
	return []*metricFamily{size, free, days}
}
