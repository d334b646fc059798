package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// Promises the README makes about options and formats, each run for real against borg and sshd.

// check --verify-data and --last N reach borg (the run's own debug line shows borg's argv), and
// borg accepts them.
func TestCheckVerifyDataAndLast(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	if r := w.run(w.backupArgs(h, "--skip", "tls", "--skip", "credentials")...); r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	check := func(extra ...string) string {
		t.Helper()
		args := append([]string{"check", "-v", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_FORCED_KEY"])...)
		r := w.run(append(args, extra...)...)
		if r.code != 0 {
			t.Fatalf("check %v:\n%s", extra, r)
		}
		ran := lines(r.stderr, "running borg check ")
		if len(ran) != 1 {
			t.Fatalf("check %v: want one borg check run:\n%s", extra, r)
		}
		return ran[0]
	}
	if ran := check(); strings.Contains(ran, "--verify-data") || strings.Contains(ran, "--last") {
		t.Fatalf("plain check: %s", ran)
	}
	if ran := check("--verify-data"); !strings.Contains(ran, " --verify-data ") {
		t.Fatalf("check --verify-data must run borg check --verify-data: %s", ran)
	}
	if ran := check("--last", "1"); !strings.Contains(ran, " --last 1 ") {
		t.Fatalf("check --last 1 must run borg check --last 1: %s", ran)
	}
}

// --compression and --exclude reach borg: the archive's own record of its command line holds the
// compression, and an excluded file is not in the archive while its neighbours are. The archive
// is named <hostname>-<UTC time>.
func TestBackupCompressionExcludeAndArchiveName(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	scratch := filepath.Join(h.tree.CouchDBData, "shards", "left-by-an-editor.tmp")
	if err := os.WriteFile(scratch, []byte("not CouchDB's"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := w.run(w.backupArgs(h, "--json", "--skip", "tls", "--skip", "credentials", "--compression", "zstd,3", "--exclude", "sh:**/*.tmp")...)
	if r.code != 0 {
		t.Fatalf("backup:\n%s", r)
	}
	rep := decodeReport(t, r)
	host, _ := os.Hostname()
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(host) + `-\d{4}-\d{2}-\d{2}T\d{6}Z$`).MatchString(rep.Archive) {
		t.Fatalf("archive name %q is not <hostname>-<UTC time> (hostname %q)", rep.Archive, host)
	}
	out, err := runWithPassphrase(w, []string{"borg", "info", "--json", w.remoteRepo() + "::" + rep.Archive})
	if err != nil {
		t.Fatalf("borg info: %v\n%s", err, out)
	}
	var info struct {
		Archives []struct {
			CommandLine []string `json:"command_line"`
		} `json:"archives"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Archives) != 1 {
		t.Fatalf("borg info: %v\n%s", err, out)
	}
	cl := strings.Join(info.Archives[0].CommandLine, " ")
	if !strings.Contains(cl, "--compression zstd,3") || !strings.Contains(cl, "--exclude sh:**/*.tmp") {
		t.Fatalf("borg create ran without the given compression and exclude: %s", cl)
	}
	paths := strings.Join(archivePaths(t, w, w.remoteRepo(), rep.Archive), "\n")
	if strings.Contains(paths, "left-by-an-editor.tmp") {
		t.Errorf("the excluded file is in the archive")
	}
	if !strings.Contains(paths, "/shards/") {
		t.Errorf("the shard files must still be archived:\n%s", paths)
	}
}

// key export without --output writes plain and paper keys under the state dir; --output with
// --paper writes the printable form; an exported key is one that borg key import accepts.
func TestKeyExportDefaultPaperAndImport(t *testing.T) {
	w := newWorld(t)
	w.mustInit(t, w.remoteRepo())
	r := w.run(append([]string{"key", "export", "--json", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("key export:\n%s", r)
	}
	var exports []KeyExport
	if err := json.Unmarshal([]byte(r.stdout), &exports); err != nil || len(exports) != 1 {
		t.Fatalf("key export --json: %v\n%s", err, r)
	}
	e := exports[0]
	for _, p := range []string{e.KeyFile, e.PaperKeyFile} {
		st, err := os.Stat(p)
		if err != nil || !strings.HasPrefix(p, filepath.Join(w.stateDir, "keys")+"/") || st.Mode().Perm() != 0o600 {
			t.Fatalf("exported key %s: %v (mode %v); want a 0600 file under the state dir's keys/", p, err, st)
		}
	}
	plain, _ := os.ReadFile(e.KeyFile)
	paper, _ := os.ReadFile(e.PaperKeyFile)
	if !strings.HasPrefix(string(plain), "BORG_KEY ") || !strings.Contains(string(paper), "BORG PAPER KEY") {
		t.Fatalf("plain key %.20q, paper key %.40q", plain, paper)
	}

	out := filepath.Join(w.dir, "printable.txt")
	if r := w.run(append([]string{"key", "export", "--repo", w.remoteRepo(), "--output", out, "--paper"}, w.common(testEnv["SSH_FORCED_KEY"])...)...); r.code != 0 {
		t.Fatalf("key export --paper:\n%s", r)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "BORG PAPER KEY") || strings.HasPrefix(string(b), "BORG_KEY ") {
		t.Fatalf("--output --paper must write the paper form: %.60q", b)
	}

	// borg itself takes the exported key back, and the repository still opens with it.
	if out, err := runWithPassphrase(w, []string{"borg", "key", "import", w.remoteRepo(), e.KeyFile}); err != nil {
		t.Fatalf("borg key import of the exported key: %v\n%s", err, out)
	}
	if out, err := runWithPassphrase(w, []string{"borg", "list", w.remoteRepo()}); err != nil {
		t.Fatalf("the repository after importing the exported key: %v\n%s", err, out)
	}
}

// --log-format decides the form of every log line on stderr, and --metrics-file where the
// metrics go. A config file named with --config must exist; the default one may be missing.
func TestLogFormatMetricsFileAndConfigFile(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	repo := filepath.Join(w.dir, "repo")
	args := func(extra ...string) []string {
		a := append([]string{"backup", "-v", "--repo", repo, "--cht-dir", h.tree.Root, "--skip", "tls", "--skip", "credentials"}, w.common(testEnv["SSH_SHELL_KEY"])...)
		return append(a, extra...)
	}
	if r := w.run(append([]string{"init", "--repo", repo}, w.common(testEnv["SSH_SHELL_KEY"])...)...); r.code != 0 {
		t.Fatalf("init:\n%s", r)
	}

	metrics := filepath.Join(w.dir, "node-exporter", "textfile", "cht.prom")
	r := w.run(args("--log-format", "json", "--metrics-file", metrics)...)
	if r.code != 0 {
		t.Fatalf("backup --log-format json:\n%s", r)
	}
	logged := 0
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err == nil && rec["level"] != nil && rec["msg"] != nil {
			logged++
		} else if strings.Contains(l, "level=") {
			t.Errorf("a text log line in a --log-format json run: %q", l)
		}
	}
	if logged == 0 {
		t.Fatalf("-v --log-format json logged no JSON record:\n%s", r)
	}
	if b, err := os.ReadFile(metrics); err != nil || !strings.Contains(string(b), `cht_backup_last_run_exit_code{job="backup",repository="`+repo+`"} 0`) {
		t.Fatalf("--metrics-file %s: %v\n%s", metrics, err, b)
	}
	if _, err := os.Stat(filepath.Join(w.stateDir, "metrics", "cht_backup.prom")); err == nil {
		t.Errorf("with --metrics-file the default metrics file must not be written")
	}

	// text, and auto when stderr is not a terminal: key=value lines with a full timestamp. Dry
	// runs: archive names have whole seconds, and these runs may fall in one.
	for _, format := range []string{"text", "auto"} {
		r := w.run(args("--log-format", format, "--dry-run")...)
		if r.code != 0 {
			t.Fatalf("backup --log-format %s:\n%s", format, r)
		}
		text := lines(r.stderr, "level=")
		if len(text) == 0 || !strings.Contains(text[0], `time="`) || strings.HasPrefix(strings.TrimSpace(r.stderr), "{") {
			t.Fatalf("--log-format %s: want text lines with time= and level=:\n%s", format, r)
		}
	}

	// A config file given by name must be there; the default path may be missing.
	missing := filepath.Join(w.dir, "no-such.env")
	r = w.run("status", "--config", missing, "--state-dir", w.stateDir)
	if r.code != 3 || !strings.Contains(r.stderr, missing) {
		t.Fatalf("a missing --config file must be a configuration error naming it:\n%s", r)
	}
	if _, err := os.Stat("/etc/cht-backup/cht-backup.env"); err == nil {
		t.Fatalf("this machine has /etc/cht-backup/cht-backup.env: the missing-default case cannot be tried here")
	}
	r = w.run("status", "--state-dir", w.stateDir, "--repo", repo)
	if r.code != 0 || strings.Contains(r.stderr, "cht-backup.env") {
		t.Fatalf("a missing default config file must be ignored (the last backup is fresh, so status exits 0):\n%s", r)
	}
}

// Two backups of one host in the same second (a manual run beside the timer's) both get an
// archive: the second takes <name>-2, the third <name>-3, and nothing that exists is touched.
func TestSameSecondBackupTakesNextFreeName(t *testing.T) {
	w := newWorld(t)
	repo := filepath.Join(w.dir, "repo")
	w.mustInit(t, repo)
	src := filepath.Join(w.dir, "src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("some data"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &options{PassphraseFile: w.passFile, StateDir: w.stateDir, Borg: "borg", Log: logrus.New()}
	ctx := context.Background()
	r, err := o.runner(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := borg.ParseRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	g := &sources.Gathered{WorkDir: src, Paths: []string{"f"}}
	name := archiveName("samehost", time.Now())
	var got []string
	for range 3 {
		s := createArchive(ctx, o, r, g, backupOptions{}, createJob{repo: parsed, name: name})
		if !s.OK {
			t.Fatalf("backup into a taken second: %s (%s)", s.Error, s.Hint)
		}
		got = append(got, s.Archive)
	}
	want := []string{name, name + "-2", name + "-3"}
	if !slices.Equal(got, want) {
		t.Fatalf("archive names %q, want %q", got, want)
	}
	listed := archiveNames(t, w, repo)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Fatalf("the repository holds %q, want %q", listed, want)
	}
}
