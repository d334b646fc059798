package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
)

// chtHost is a throwaway CHT host: a tree and, unless skipped, its running containers.
type chtHost struct {
	tree       *sourcestest.Tree
	containers *sourcestest.Containers
}

func newCHTHost(t *testing.T, w *world, naming sourcestest.Naming, opts ...sourcestest.Option) *chtHost {
	t.Helper()
	project := sourcestest.UniqueProject()
	tree := sourcestest.NewTree(t, filepath.Join(w.dir, "cht"), append([]sourcestest.Option{func(o *sourcestest.Options) { o.Project = project }}, opts...)...)
	cs := sourcestest.StartContainers(t, context.Background(), project, naming)
	return &chtHost{tree: tree, containers: cs}
}

func (w *world) backupArgs(h *chtHost, extra ...string) []string {
	args := append([]string{"backup", "--repo", w.remoteRepo(), "--cht-dir", h.tree.Root}, w.common(testEnv["SSH_SHELL_KEY"])...)
	return append(args, extra...)
}

func (w *world) mustInit(t *testing.T, repo string) {
	t.Helper()
	if r := w.run(append([]string{"init", "--repo", repo}, w.common(testEnv["SSH_SHELL_KEY"])...)...); r.code != 0 {
		t.Fatalf("init:\n%s", r)
	}
}

func decodeReport(t *testing.T, r result) BackupReport {
	t.Helper()
	var rep BackupReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("backup --json output: %v\n%s", err, r)
	}
	return rep
}

// Every source is in the archive, byte-identical after a plain borg extract, whatever the
// container naming era; view indexes come before database files.
func TestBackupArchivesEverySourceByteIdentical(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	for _, naming := range []sourcestest.Naming{sourcestest.LabelsOnly, sourcestest.NamesV1, sourcestest.NamesV2} {
		t.Run(naming.String(), func(t *testing.T) {
			w := newWorld(t)
			h := newCHTHost(t, w, naming)
			w.mustInit(t, w.remoteRepo())
			r := w.run(w.backupArgs(h, "--json")...)
			if r.code != 0 {
				t.Fatalf("backup:\n%s", r)
			}
			rep := decodeReport(t, r)
			if len(rep.Repositories) != 1 || !rep.Repositories[0].OK || rep.Repositories[0].Files == 0 || rep.Repositories[0].OriginalSize == 0 {
				t.Fatalf("summary: %+v", rep.Repositories)
			}
			name := rep.Repositories[0].Archive
			if !strings.HasPrefix(name, rep.Host+"-") {
				t.Errorf("archive name %q is not <hostname>-<time>", name)
			}
			if got := archiveNames(t, w, w.remoteRepo()); len(got) != 1 || got[0] != name {
				t.Fatalf("archives in the repository: %v, want [%s]", got, name)
			}

			x := plainExtract(t, w, w.remoteRepo(), name)
			hostFiles := append(append(append([]string{h.tree.EnvFile}, h.tree.ComposeFiles...), h.tree.CouchFiles...), h.tree.ViewFiles...)
			for _, f := range hostFiles {
				want, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				sameFile(t, want, filepath.Join(x, f))
			}
			for p, want := range h.containers.Files {
				svc := "nginx"
				if strings.HasPrefix(p, "/opt/couchdb") {
					svc = "couchdb"
				}
				sameFile(t, want, filepath.Join(x, "cht-backup", "containers", svc, p))
			}
			m, err := sources.ReadManifest(filepath.Join(x, "cht-backup", "manifest.json"))
			if err != nil {
				t.Fatalf("manifest: %v", err)
			}
			if m.CHTVersion != h.tree.CHTVersion || len(m.SHA256) == 0 || len(m.CouchDB.Databases) == 0 {
				t.Errorf("manifest: cht version %q (want %q), %d checksummed files", m.CHTVersion, h.tree.CHTVersion, len(m.SHA256))
			}

			// CouchDB rule: every view index file is archived before any database file.
			paths := archivePaths(t, w, w.remoteRepo(), name)
			lastView, firstDB := -1, len(paths)
			for i, p := range paths {
				if strings.Contains(p, "/.shards/") && strings.HasSuffix(p, ".view") {
					lastView = i
				}
				if strings.Contains(p, "/shards/") && strings.HasSuffix(p, ".couch") && i < firstDB {
					firstDB = i
				}
			}
			if lastView < 0 || lastView > firstDB {
				t.Errorf("view indexes must come before database files: last view at %d, first db at %d", lastView, firstDB)
			}
			stagings, _ := filepath.Glob(filepath.Join(w.stateDir, "staging", "*"))
			if len(stagings) != 0 {
				t.Errorf("staging left behind: %v", stagings)
			}
		})
	}
}

func TestBackupSecondRunIsDeduplicated(t *testing.T) {
	w := newWorld(t)
	// Files larger than borg's average chunk (2 MiB), as real shard files are: an append then
	// changes only the last chunk of each file.
	h := newCHTHost(t, w, sourcestest.LabelsOnly, func(o *sourcestest.Options) { o.FileSize = 8 << 20 })
	w.mustInit(t, w.remoteRepo())
	first := decodeReport(t, w.run(w.backupArgs(h, "--json")...))
	if err := h.tree.GrowCouchFiles(4096); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // archive names have one-second resolution
	r := w.run(w.backupArgs(h, "--json")...)
	if r.code != 0 {
		t.Fatalf("second backup:\n%s", r)
	}
	second := decodeReport(t, r).Repositories[0]
	if second.OriginalSize <= first.Repositories[0].OriginalSize {
		t.Fatalf("the grown files were not archived: %d <= %d", second.OriginalSize, first.Repositories[0].OriginalSize)
	}
	// The data is random, so without deduplication nearly all of it would be new.
	if second.DeduplicatedSize*2 > second.OriginalSize {
		t.Fatalf("second backup not deduplicated: %d new of %d", second.DeduplicatedSize, second.OriginalSize)
	}
}

// A file appended to while borg reads it gives exit 1 and is named; the archive is still written.
func TestBackupFileChangedDuringRunIsAWarningNamingIt(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	big := filepath.Join(h.tree.CouchDBData, "shards", h.tree.ShardRanges[0], "growing.1700000000.couch")
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	f, err := os.OpenFile(big, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		f.Write(buf)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			f.Write(buf[:4096])
			time.Sleep(time.Millisecond)
		}
	}()
	r := w.run(w.backupArgs(h)...)
	stop.Store(true)
	<-done
	f.Close()
	if r.code != 1 {
		t.Fatalf("want exit 1 (warning):\n%s", r)
	}
	warn := lines(r.stdout, "warning ")
	if len(warn) == 0 || !strings.Contains(strings.Join(warn, "\n"), strings.TrimPrefix(big, "/")) || !strings.Contains(strings.Join(warn, "\n"), "changed while") {
		t.Fatalf("the changed file is not named:\n%s", r)
	}
	if names := archiveNames(t, w, w.remoteRepo()); len(names) != 1 {
		t.Fatalf("a warning still writes the archive: %v", names)
	}
}

// Bad input fails clearly, names what is missing, and writes no archive.
func TestBackupFailuresWriteNoArchive(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, h *chtHost)
		wants  []string
	}{
		{"missing .env", func(t *testing.T, h *chtHost) { os.Remove(h.tree.EnvFile) }, []string{".env", "--cht-dir"}},
		{"unreadable COUCHDB_DATA", func(t *testing.T, h *chtHost) {
			os.RemoveAll(h.tree.CouchDBData)
			os.WriteFile(h.tree.CouchDBData, []byte("not a directory"), 0o600)
		}, []string{"COUCHDB_DATA", "/cht/couchdb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			h := newCHTHost(t, w, sourcestest.NamesV2)
			w.mustInit(t, w.remoteRepo())
			tt.break_(t, h)
			r := w.run(w.backupArgs(h)...)
			if r.code != 2 {
				t.Fatalf("want exit 2:\n%s", r)
			}
			for _, want := range tt.wants {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("error lacks %q:\n%s", want, r)
				}
			}
			if !strings.Contains(r.stderr, "what to do:") {
				t.Errorf("no hint:\n%s", r)
			}
			if names := archiveNames(t, w, w.remoteRepo()); len(names) != 0 {
				t.Fatalf("a failed backup left archives: %v", names)
			}
			if st, _ := filepath.Glob(filepath.Join(w.stateDir, "staging", "*")); len(st) != 0 {
				t.Fatalf("staging left behind: %v", st)
			}
		})
	}
}

// No .env value appears in any output or log, at -v, in text or JSON logs.
func TestBackupNeverShowsEnvValues(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	for _, extra := range [][]string{{"-v"}, {"-v", "--json", "--log-format", "json"}, {"-v", "--dry-run"}} {
		r := w.run(w.backupArgs(h, extra...)...)
		if r.code != 0 {
			t.Fatalf("backup %v:\n%s", extra, r)
		}
		for _, secret := range h.tree.SecretValues() {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Fatalf("backup %v printed an .env value", extra)
			}
		}
		if strings.Contains(strings.Join(extra, " "), "--log-format json") {
			// For journald and log shippers: every log line is one JSON object.
			n := 0
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil {
					t.Fatalf("log line is not a JSON record: %q (%v)", l, err)
				}
				n++
			}
			if n == 0 {
				t.Fatal("-v with --log-format json logged nothing")
			}
		}
	}
}

// --dry-run writes nothing; --repo on the command line picks one of the configured repositories.
func TestBackupDryRunAndRepositorySelection(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	second := filepath.Join(w.dir, "usb-repo")
	w.mustInit(t, w.remoteRepo())
	w.mustInit(t, second)
	os.WriteFile(w.config, []byte("CHT_BACKUP_REPO="+w.remoteRepo()+","+second+"\n"), 0o600)

	r := w.run(append([]string{"backup", "--dry-run", "--cht-dir", h.tree.Root}, w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing was written") || !strings.Contains(r.stdout, ".shards") {
		t.Fatalf("dry run:\n%s", r)
	}
	if a, b := archiveNames(t, w, w.remoteRepo()), archiveNames(t, w, second); len(a)+len(b) != 0 {
		t.Fatalf("dry run wrote archives: %v %v", a, b)
	}

	r = w.run(append([]string{"backup", "--cht-dir", h.tree.Root, "--repo", second}, w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("backup to one repository:\n%s", r)
	}
	if a, b := archiveNames(t, w, w.remoteRepo()), archiveNames(t, w, second); len(a) != 0 || len(b) != 1 {
		t.Fatalf("--repo must pick one repository: remote %v, local %v", a, b)
	}
	r = w.run(append([]string{"backup", "--cht-dir", h.tree.Root}, w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if r.code != 0 || len(lines(r.stdout, "ok ")) != 2 {
		t.Fatalf("backup to both configured repositories:\n%s", r)
	}
	// A local disk and a backup server are different media: both were written at once.
	f, err := state.Load(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	remote, local := f.Find(state.JobBackup, w.remoteRepo()), f.Find(state.JobBackup, second)
	if remote == nil || local == nil {
		t.Fatalf("state after the backup to both: %+v", f.Entries)
	}
	a, b := remote.LastRun, local.LastRun
	if !a.Start.Before(b.End) || !b.Start.Before(a.End) {
		t.Errorf("the server and the local disk were written one after the other: %s-%s and %s-%s",
			a.Start.Format(time.StampMilli), a.End.Format(time.StampMilli), b.Start.Format(time.StampMilli), b.End.Format(time.StampMilli))
	}
}

// Repositories are grouped by what they are written to: one server (whatever the path or user),
// one local filesystem; a group is written in turn, groups at once.
func TestGroupByMedium(t *testing.T) {
	dir := t.TempDir()
	repo := func(s string) borg.Repository {
		r, err := borg.ParseRepository(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	repos := []borg.Repository{
		repo("ssh://borg@backup.example.org/./cht"),
		repo(filepath.Join(dir, "a")),
		repo("ssh://other@BACKUP.example.org:2222/srv/cht"),
		repo("ssh://borg@offsite.example.net/./cht"),
		repo(filepath.Join(dir, "not-yet", "b")), // not there: the filesystem of its nearest parent
		repo("/proc/cht"),                        // another filesystem
	}
	got := groupByMedium(repos)
	want := [][]int{{0, 2}, {1, 4}, {3}, {5}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
}
