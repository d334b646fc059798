package state

import (
	"bytes"
	"fmt"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Watch is the backup server's view of one repository: when it last received an archive and
// whether that is too long ago. It needs only the repository directory.
type Watch struct {
	Path       string         `json:"path"`
	Overdue    bool           `json:"overdue"`
	AgeSeconds *float64       `json:"age_seconds,omitempty"` // since the last archive
	Problem    string         `json:"problem,omitempty"`     // why it is overdue, in words
	Activity   *borg.Activity `json:"activity,omitempty"`
}

// Watches judges each repository's activity (or the error reading it) against maxAge.
func Watches(paths []string, read func(string) (*borg.Activity, error), maxAge time.Duration, now time.Time) []Watch {
	var out []Watch
	for _, p := range paths {
		w := Watch{Path: p}
		a, err := read(p)
		switch {
		case err != nil:
			w.Overdue, w.Problem = true, fmt.Sprintf("cannot read it: %v", err)
		case a.LastArchive.IsZero():
			w.Activity = a
			w.Overdue, w.Problem = true, "it has received no archive yet"
		default:
			w.Activity = a
			age := now.Sub(a.LastArchive)
			s := age.Seconds()
			w.AgeSeconds = &s
			if age > maxAge {
				w.Overdue = true
				w.Problem = fmt.Sprintf("its last archive is %s old, more than --max-age %s", roundAge(age), maxAge)
			}
		}
		out = append(out, w)
	}
	return out
}

func roundAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}

// WatchMetrics renders the watches as Prometheus text for node_exporter's textfile collector on
// the backup server. Names start with cht_backup_server_, apart from what the CHT host writes.
func WatchMetrics(ws []Watch, maxAge time.Duration) []byte {
	fam := func(name, help string) *metricFamily {
		return &metricFamily{name: "cht_backup_server_" + name, help: help}
	}
	last := fam("last_archive_timestamp_seconds", "When the repository last received a committed archive (Unix time); 0 if never or unreadable.")
	overdue := fam("overdue", fmt.Sprintf("1 if the repository received no archive for longer than %s (or cannot be read), else 0.", maxAge))
	locked := fam("repository_locked", "1 if a borg process holds the repository's lock (e.g. a backup is running).")
	size := fam("repository_bytes", "What the repository's segment files take on disk.")
	free := fam("repository_free_bytes", "Free space of the file system holding the repository.")
	for _, w := range ws {
		l := [][2]string{{"repository", w.Path}}
		overdue.add(l, b2f(w.Overdue))
		a := w.Activity
		if a == nil {
			last.add(l, 0)
			continue
		}
		if a.LastArchive.IsZero() {
			last.add(l, 0)
		} else {
			last.add(l, unix(a.LastArchive))
		}
		locked.add(l, b2f(a.Locked))
		size.add(l, float64(a.Bytes))
		if a.FreeBytes >= 0 {
			free.add(l, float64(a.FreeBytes))
		}
	}
	reg := prometheus.NewPedanticRegistry()
	for _, m := range []*metricFamily{last, overdue, locked, size, free} {
		m.register(reg)
	}
	mfs, err := reg.Gather()
	if err != nil {
		panic(err) // the names and labels are ours: a gathering error is a bug
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}
