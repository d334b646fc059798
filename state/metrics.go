package state

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// metricFamily is one metric name with its help text and samples, in the Prometheus text
// exposition format (version 0.0.4) that node_exporter's textfile collector reads.
type metricFamily struct {
	name, help string
	samples    []sample
}

type sample struct {
	labels [][2]string
	value  float64
}

// Metrics renders the state as Prometheus text: per job and repository, when the last run ended
// and how, when the last success ended, and the sizes of the last successful backup. Never
// having succeeded is shown as a last-success timestamp of 0, so `time() - x > 26*3600` alerts.
func Metrics(f *File) []byte {
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

	for _, e := range f.Entries {
		l := [][2]string{{"job", e.Job}, {"repository", e.Repository}}
		r := e.LastRun
		lastRun.add(l, unix(r.End))
		duration.add(l, r.Duration().Seconds())
		exitCode.add(l, float64(r.ExitCode))
		success.add(l, b2f(r.Succeeded()))
		warnings.add(l, float64(len(r.Warnings)))
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

	var b bytes.Buffer
	for _, m := range []*metricFamily{lastRun, duration, exitCode, success, warnings, lastOK, original, compressed, dedup, files, archives} {
		m.write(&b)
	}
	return b.Bytes()
}

// WriteMetrics writes the metrics file at path atomically (node_exporter must never read half a
// file), mode 0644 so node_exporter's own user can read it.
func WriteMetrics(path string, f *File) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cannot create metrics directory %s: %v", dir, unwrapPath(err))
		}
		// A service's umask (0077) would hide the file from node_exporter's user.
		os.Chmod(dir, 0o755)
	}
	data := Metrics(f)
	return WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func (m *metricFamily) add(labels [][2]string, v float64) {
	m.samples = append(m.samples, sample{labels: labels, value: v})
}

func (m *metricFamily) write(b *bytes.Buffer) {
	if len(m.samples) == 0 {
		return
	}
	fmt.Fprintf(b, "# HELP %s %s\n", m.name, escapeHelp(m.help))
	fmt.Fprintf(b, "# TYPE %s gauge\n", m.name)
	sort.SliceStable(m.samples, func(i, j int) bool { return labelKey(m.samples[i].labels) < labelKey(m.samples[j].labels) })
	for _, s := range m.samples {
		b.WriteString(m.name)
		if len(s.labels) > 0 {
			b.WriteByte('{')
			for i, l := range s.labels {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(b, "%s=\"%s\"", l[0], escapeLabel(l[1]))
			}
			b.WriteByte('}')
		}
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(s.value, 'g', -1, 64))
		b.WriteByte('\n')
	}
}

func labelKey(l [][2]string) string {
	var parts []string
	for _, kv := range l {
		parts = append(parts, kv[0]+"\x00"+kv[1])
	}
	return strings.Join(parts, "\x01")
}

// escapeLabel and escapeHelp follow the exposition format: label values escape \, " and
// newline; help text escapes \ and newline.
var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

func unix(t time.Time) float64 { return float64(t.Unix()) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
