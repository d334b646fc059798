package state

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metricFamily is one metric name with its help text and samples; prometheus/client_golang turns
// the families into a registry of gauges and writes the text exposition format that
// node_exporter's textfile collector reads.
type metricFamily struct {
	name, help string
	samples    []sample
}

type sample struct {
	labels [][2]string
	value  float64
}

// Metrics renders the state as Prometheus text (see registry).
func Metrics(f *File) []byte {
	var b bytes.Buffer
	mfs, err := registry(f).Gather()
	if err != nil {
		panic(err) // the names and labels are ours: a gathering error is a bug
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			panic(err)
		}
	}
	return b.Bytes()
}

// registry holds the state's metrics: per job and repository, when the last run ended
// and how, when the last success ended, and the sizes of the last successful backup. Never
// having succeeded is shown as a last-success timestamp of 0, so `time() - x > 26*3600` alerts.
func registry(f *File) *prometheus.Registry {
	fam := func(name, help string) *metricFamily { return &metricFamily{name: "cht_backup_" + name, help: help} }
	lastRun := fam("last_run_timestamp_seconds", "When the last run of the job ended for the repository (Unix time).")
	duration := fam("last_run_duration_seconds", "How long the last run of the job took for the repository.")
	exitCode := fam("last_run_exit_code", "Exit status of the last run for the repository: 0 ok, 1 finished with warnings, 2 or more failed.")
	success := fam("last_run_success", "1 if the last run did its work (ok or warnings), 0 if it failed.")
	warnings := fam("last_run_warnings", "Warnings of the last run for the repository (e.g. files changed while read).")
	lastOK := fam("last_success_timestamp_seconds", "When the last successful run of the job ended for the repository (Unix time); 0 if it never succeeded.")
	original := fam("last_success_original_size_bytes", "Original size of the archive written by the last successful backup.")
	compressed := fam("last_success_compressed_size_bytes", "Compressed size of the archive written by the last successful backup.")
	dedup := fam("last_success_deduplicated_size_bytes", "New data the last successful backup added to the repository.")
	files := fam("last_success_files", "Files in the archive written by the last successful backup.")
	archives := fam("repository_archives", "Archives in the repository when a job last counted them.")
	unreadable := fam("last_run_unreadable_files", "Files the last backup could not read (permission denied, I/O error): the archive lacks them and the run failed.")
	partial := fam("last_run_partial", "1 if the last backup's archive lacks parts that could not be gathered (Docker down, a container missing).")

	for _, e := range f.Entries {
		l := [][2]string{{"job", e.Job}, {"repository", e.Repository}}
		r := e.LastRun
		lastRun.add(l, unix(r.End))
		duration.add(l, r.Duration().Seconds())
		exitCode.add(l, float64(r.ExitCode))
		success.add(l, b2f(r.Succeeded()))
		warnings.add(l, float64(len(r.Warnings)))
		if e.Job == JobBackup {
			unreadable.add(l, float64(r.Unreadable))
			partial.add(l, b2f(r.Status == StatusPartial))
		}
		if s := e.LastSuccess; s != nil {
			lastOK.add(l, unix(s.End))
			if s.Archive != "" && e.Job == JobBackup {
				original.add(l, float64(s.OriginalSize))
				compressed.add(l, float64(s.CompressedSize))
				dedup.add(l, float64(s.DeduplicatedSize))
				files.add(l, float64(s.Files))
			}
		} else {
			lastOK.add(l, 0)
		}
	}
	for _, repo := range f.Repositories() {
		if n, _, ok := f.ArchiveCount(repo); ok {
			archives.add([][2]string{{"repository", repo}}, float64(n))
		}
	}

	reg := prometheus.NewPedanticRegistry()
	families := []*metricFamily{lastRun, duration, exitCode, success, warnings, lastOK, original, compressed, dedup, files, archives, unreadable, partial}
	families = append(families, couchDBFamilies(f)...)
	for _, m := range append(families, usageFamilies(f, time.Now())...) {
		m.register(reg)
	}
	return reg
}

// WriteMetrics writes the metrics file at path with prometheus.WriteToTextfile: a temporary file
// renamed over it (node_exporter must never read half a file; the temporary name does not end in
// .prom, so it is not read either), mode 0644 so node_exporter's own user can read it.
func WriteMetrics(path string, f *File) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cannot create metrics directory %s: %v", dir, unwrapPath(err))
		}
		// A service's umask (0077) would hide the file from node_exporter's user.
		os.Chmod(dir, 0o755)
	}
	if err := prometheus.WriteToTextfile(path, registry(f)); err != nil {
		return fmt.Errorf("cannot write metrics file %s: %v", path, unwrapPath(err))
	}
	return nil
}

func (m *metricFamily) add(labels [][2]string, v float64) {
	m.samples = append(m.samples, sample{labels: labels, value: v})
}

// register adds the family to reg as a gauge vector, when it has samples. Label values are made
// valid UTF-8 (a repository path need not be), which the exposition format requires.
func (m *metricFamily) register(reg *prometheus.Registry) {
	if len(m.samples) == 0 {
		return
	}
	var names []string
	for _, l := range m.samples[0].labels {
		names = append(names, l[0])
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: m.name, Help: m.help}, names)
	for _, s := range m.samples {
		values := make([]string, len(s.labels))
		for i, l := range s.labels {
			values[i] = strings.ToValidUTF8(l[1], "\uFFFD")
		}
		g.WithLabelValues(values...).Set(s.value)
	}
	reg.MustRegister(g)
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
