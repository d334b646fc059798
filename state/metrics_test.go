package state

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMetricsAreValidExpositionFormat(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 2, 30, 0, 0, time.UTC)
	f := &File{}
	f.apply(Outcome{Job: JobBackup, Repository: "ssh://borg@backup/./cht", Start: t0, End: t0.Add(90 * time.Second), Archive: "h-1",
		OriginalSize: 1 << 30, CompressedSize: 1 << 29, DeduplicatedSize: 12345, Files: 321, Archives: 12})
	f.apply(Outcome{Job: JobBackup, Repository: "ssh://borg@backup/./cht", Start: t0.Add(24 * time.Hour), End: t0.Add(24*time.Hour + 5*time.Second),
		Error: "connection closed", ExitCode: 2})
	// A repository nobody could ever back up, with a path that needs escaping.
	odd := "/mnt/usb \"disk\"\\cht\nx"
	f.apply(Outcome{Job: JobBackup, Repository: odd, Start: t0, End: t0.Add(time.Second), Status: StatusFailed})
	f.apply(Outcome{Job: JobCheck, Repository: "ssh://borg@backup/./cht", Start: t0, End: t0.Add(time.Hour), Status: StatusWarning, Warnings: []string{"w"}})

	text := string(Metrics(f))
	series, err := parseExposition(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	r := `repository="ssh://borg@backup/./cht"`
	want := map[string]float64{
		`cht_backup_last_run_exit_code{job="backup",` + r + `}`:                            2,
		`cht_backup_last_run_success{job="backup",` + r + `}`:                              0,
		`cht_backup_last_run_duration_seconds{job="backup",` + r + `}`:                     5,
		`cht_backup_last_run_timestamp_seconds{job="backup",` + r + `}`:                    float64(t0.Add(24*time.Hour + 5*time.Second).Unix()),
		`cht_backup_last_success_timestamp_seconds{job="backup",` + r + `}`:                float64(t0.Add(90 * time.Second).Unix()),
		`cht_backup_last_success_original_size_bytes{job="backup",` + r + `}`:              1 << 30,
		`cht_backup_last_success_compressed_size_bytes{job="backup",` + r + `}`:            1 << 29,
		`cht_backup_last_success_deduplicated_size_bytes{job="backup",` + r + `}`:          12345,
		`cht_backup_last_success_files{job="backup",` + r + `}`:                            321,
		`cht_backup_repository_archives{` + r + `}`:                                        12,
		`cht_backup_last_run_exit_code{job="check",` + r + `}`:                             1,
		`cht_backup_last_run_success{job="check",` + r + `}`:                               1,
		`cht_backup_last_run_warnings{job="check",` + r + `}`:                              1,
		`cht_backup_last_success_timestamp_seconds{job="backup",repository="` + odd + `"}`: 0,
		`cht_backup_last_run_exit_code{job="backup",repository="` + odd + `"}`:             2,
	}
	for k, v := range want {
		got, ok := series[k]
		if !ok {
			t.Errorf("missing %s", k)
		} else if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if _, ok := series[`cht_backup_last_success_original_size_bytes{job="check",`+r+`}`]; ok {
		t.Error("sizes belong to backups only")
	}
	if !strings.Contains(text, `repository="/mnt/usb \"disk\"\\cht\nx"`) {
		t.Errorf("label value not escaped:\n%s", text)
	}
}

func TestWriteMetricsAtomicallyWithReadableMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics", "cht_backup.prom")
	f := &File{}
	f.apply(Outcome{Job: JobBackup, Repository: "r"})
	if err := WriteMetrics(path, f); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("metrics file: %v %v", st, err)
	}
	b, _ := os.ReadFile(path)
	if _, err := parseExposition(string(b)); err != nil {
		t.Fatal(err)
	}
}

func TestParseExpositionRejectsBadInput(t *testing.T) {
	for _, bad := range []string{
		"x 1\n",                        // no TYPE
		"# TYPE x gauge\nx{a=\"1} 1\n", // unterminated label
		"# TYPE x gauge\nx 1\nx 2\n",   // duplicate series
		"# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n", // family split
		"# TYPE x gauge\nx one\n",                                  // bad value
		"# TYPE x gauge\nx 1",                                      // no final newline
		"# TYPE x gauge\n# HELP x late\nx 1\n# HELP x again\n",
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// parseExposition is a strict reader of the Prometheus text format: HELP and TYPE at most once
// per family and before its samples, samples of a family together, names and label syntax
// valid, values numbers, no duplicate series. It returns series (name{labels} with unescaped
// values, labels as written) to values.
func parseExposition(text string) (map[string]float64, error) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("the text must end with a newline")
	}
	series := map[string]float64{}
	typed, helped, done := map[string]bool{}, map[string]bool{}, map[string]bool{}
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || (f[1] != "HELP" && f[1] != "TYPE") {
				continue // a plain comment
			}
			name := f[2]
			if !metricName.MatchString(name) {
				return nil, fmt.Errorf("line %d: bad metric name %q", n, name)
			}
			if done[name] || name == current {
				return nil, fmt.Errorf("line %d: %s of %s after its samples", n, f[1], name)
			}
			m := helped
			if f[1] == "TYPE" {
				m = typed
				if len(f) != 4 || !map[string]bool{"gauge": true, "counter": true, "untyped": true, "summary": true, "histogram": true}[f[3]] {
					return nil, fmt.Errorf("line %d: bad TYPE line", n)
				}
			}
			if m[name] {
				return nil, fmt.Errorf("line %d: second %s for %s", n, f[1], name)
			}
			m[name] = true
			continue
		}
		name, labels, rest, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if !typed[name] {
			return nil, fmt.Errorf("line %d: sample of %s without a TYPE line", n, name)
		}
		if name != current {
			if done[name] {
				return nil, fmt.Errorf("line %d: samples of %s are not together", n, name)
			}
			if current != "" {
				done[current] = true
			}
			current = name
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 || len(fields) > 2 {
			return nil, fmt.Errorf("line %d: want a value and an optional timestamp", n)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad value %q", n, fields[0])
		}
		key := name
		if len(labels) > 0 {
			key += "{" + strings.Join(labels, ",") + "}"
		}
		if _, dup := series[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate series %s", n, key)
		}
		series[key] = v
	}
	return series, nil
}

// parseSample splits `name{a="x",b="y"} rest`; label values come back unescaped.
func parseSample(line string) (name string, labels []string, rest string, err error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, "", fmt.Errorf("no value")
	}
	name = line[:i]
	if !metricName.MatchString(name) {
		return "", nil, "", fmt.Errorf("bad metric name %q", name)
	}
	if line[i] == ' ' {
		return name, nil, line[i+1:], nil
	}
	s := line[i+1:]
	seen := map[string]bool{}
	for {
		if strings.HasPrefix(s, "}") {
			s = s[1:]
			break
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return "", nil, "", fmt.Errorf("bad label in %q", line)
		}
		ln := s[:eq]
		if !labelName.MatchString(ln) || seen[ln] {
			return "", nil, "", fmt.Errorf("bad or repeated label name %q", ln)
		}
		seen[ln] = true
		s = s[eq+2:]
		var val strings.Builder
		closed := false
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c == '\\' {
				if j+1 >= len(s) {
					break
				}
				j++
				switch s[j] {
				case '\\':
					val.WriteByte('\\')
				case '"':
					val.WriteByte('"')
				case 'n':
					val.WriteByte('\n')
				default:
					return "", nil, "", fmt.Errorf("bad escape \\%c", s[j])
				}
				continue
			}
			if c == '"' {
				s = s[j+1:]
				closed = true
				break
			}
			if c == '\n' {
				break
			}
			val.WriteByte(c)
		}
		if !closed {
			return "", nil, "", fmt.Errorf("unterminated label value in %q", line)
		}
		labels = append(labels, ln+`="`+val.String()+`"`)
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return "", nil, "", fmt.Errorf("want , or } after a label in %q", line)
		}
	}
	if !strings.HasPrefix(s, " ") {
		return "", nil, "", fmt.Errorf("want a space before the value in %q", line)
	}
	return name, labels, s[1:], nil
}

// A repository path need not be UTF-8; the exposition format's label values must be.
func TestMetricsWithANonUTF8RepositoryPath(t *testing.T) {
	f := &File{}
	f.apply(Outcome{Job: JobBackup, Repository: "/mnt/\xff\xfe-disk", Status: StatusFailed})
	path := filepath.Join(t.TempDir(), "cht_backup.prom")
	if err := WriteMetrics(path, f); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	series, err := parseExposition(string(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if _, ok := series["cht_backup_last_run_exit_code{job=\"backup\",repository=\"/mnt/\uFFFD-disk\"}"]; !ok {
		t.Errorf("the repository's series is missing:\n%s", b)
	}
	if left, _ := filepath.Glob(path + "*"); len(left) != 1 {
		t.Errorf("temporary files left beside the metrics file: %q", left)
	}
}

// The last CouchDB drill of a job: its status and, per database, whether it opened with the
// recorded figures and how many documents it holds.
func TestMetricsCouchDBDrill(t *testing.T) {
	f := &File{}
	f.apply(Outcome{Job: JobVerify, Repository: "/r", Status: StatusOK, CouchDB: &CouchDBDrill{Status: "passed", Databases: []CouchDBDatabase{
		{Name: "medic", OK: true, DocCount: 10, DocDelCount: 2}, {Name: "_users", OK: false}}}})
	f.apply(Outcome{Job: JobRestore, Repository: "/r", Status: StatusOK, CouchDB: &CouchDBDrill{Status: "not run"}})
	got := string(Metrics(f))
	for _, want := range []string{
		`cht_backup_couchdb_drill_status{job="verify",repository="/r"} 1`,
		`cht_backup_couchdb_drill_status{job="restore",repository="/r"} -1`,
		`cht_backup_couchdb_drill_database_ok{database="medic",job="verify",repository="/r"} 1`,
		`cht_backup_couchdb_drill_database_ok{database="_users",job="verify",repository="/r"} 0`,
		`cht_backup_couchdb_drill_database_docs{database="medic",job="verify",repository="/r"} 12`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}
}

// The unreadable-files and partial series belong to backups: a backup that lacked files and
// parts says how many and that it is partial; a check has neither series.
func TestMetricsUnreadableAndPartialAreBackupSeries(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 2, 30, 0, 0, time.UTC)
	f := &File{}
	f.apply(Outcome{Job: JobBackup, Repository: "/r", Start: t0, End: t0.Add(time.Minute), Archive: "h-1", Status: StatusPartial, Unreadable: 3, ExitCode: 1})
	f.apply(Outcome{Job: JobCheck, Repository: "/r", Start: t0, End: t0.Add(time.Minute)})
	series, err := parseExposition(string(Metrics(f)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]float64{
		`cht_backup_last_run_unreadable_files{job="backup",repository="/r"}`: 3,
		`cht_backup_last_run_partial{job="backup",repository="/r"}`:          1,
	} {
		if got, ok := series[k]; !ok || got != v {
			t.Errorf("%s = %v (%v), want %v", k, got, ok, v)
		}
	}
	for _, k := range []string{`cht_backup_last_run_unreadable_files{job="check",repository="/r"}`, `cht_backup_last_run_partial{job="check",repository="/r"}`} {
		if _, ok := series[k]; ok {
			t.Errorf("%s: a check has no such series", k)
		}
	}
}
