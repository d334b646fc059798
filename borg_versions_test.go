package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
)

// seriesOf is the "1.4" of a borg binary's version.
func seriesOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	m := regexp.MustCompile(`borg (\d+\.\d+)\.\d+`).FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("%s --version: %v %q", bin, err, out)
	}
	return m[1]
}

// The run uses the chosen borg on both sides: the tool reports the client it runs and the
// version borg serve gives over the forced key.
func TestBorgVersionsInUse(t *testing.T) {
	w := newWorld(t)
	wantClient := seriesOf(t, borgBin())
	wantServe := seriesOf(t, "borg")
	if serveBorg != "" {
		wantServe = seriesOf(t, serveBorg)
	}
	for _, kind := range []string{"SSH_FORCED_KEY", "SSH_SHELL_KEY"} {
		r := w.run(append([]string{"preflight", "--repo", w.remoteRepo()}, w.common(testEnv[kind])...)...)
		if r.code != 0 {
			t.Fatalf("preflight with %s:\n%s", kind, r)
		}
		if !regexp.MustCompile(`borg\s+borg ` + regexp.QuoteMeta(wantClient) + `\.\d+ installed`).MatchString(r.stdout) {
			t.Errorf("%s: the client is not borg %s:\n%s", kind, wantClient, r)
		}
		if !regexp.MustCompile(`remote borg\s+borg ` + regexp.QuoteMeta(wantServe) + `\.\d+`).MatchString(r.stdout) {
			t.Errorf("%s: the server is not borg %s:\n%s", kind, wantServe, r)
		}
	}
}

// The core cycle of a CHT admin (preflight, init, backup, archives, verify, restore, check) with
// borg 1.4 as the client, and with client and server of different series both ways: a CHT host
// with borg 1.2 meets backup servers with 1.4, and the reverse. The rest of the suite runs the
// system's borg on both sides; CHT_BACKUP_TEST_BORG and CHT_BACKUP_TEST_BORG_SERVE run all of it
// with other series. Every call goes through the key forced to the server series' borg serve.
func TestBorgVersionMatrix(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	needEnv(t)
	host := newWorld(t)
	h := newCHTHost(t, host, sourcestest.LabelsOnly)
	for _, cell := range []struct{ client, serve string }{{"1.4", "1.4"}, {"1.2", "1.4"}, {"1.4", "1.2"}} {
		t.Run(fmt.Sprintf("client-%s-serve-%s", cell.client, cell.serve), func(t *testing.T) {
			client, err := borgSeriesPath(cell.client)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := borgSeriesPath(cell.serve); err != nil {
				t.Fatal(err)
			}
			key := testEnv["SSH_FORCED_KEY_BORG_"+strings.ReplaceAll(cell.serve, ".", "_")]
			w := newWorld(t)
			w.env = append(w.env, "CHT_BACKUP_BORG="+client)
			common := append([]string{"--repo", w.remoteRepo(), "--cht-dir", h.tree.Root}, w.common(key)...)
			run := func(args ...string) result {
				t.Helper()
				return w.run(append(args, common...)...)
			}

			r := run("preflight")
			if r.code != 0 || !regexp.MustCompile(`borg\s+borg `+regexp.QuoteMeta(cell.client)+`\.\d+ installed`).MatchString(r.stdout) ||
				!regexp.MustCompile(`remote borg\s+borg `+regexp.QuoteMeta(cell.serve)+`\.\d+`).MatchString(r.stdout) {
				t.Fatalf("preflight must pass and name client %s, server %s:\n%s", cell.client, cell.serve, r)
			}
			// With a shell key, borg starts BORG_REMOTE_PATH on the server; preflight asks that one.
			serve, _ := borgSeriesPath(cell.serve)
			shell := newWorld(t)
			shell.env = append(shell.env, "CHT_BACKUP_BORG="+client, "BORG_REMOTE_PATH="+serve)
			r = shell.run(append([]string{"preflight", "--repo", shell.remoteRepo()}, shell.common(testEnv["SSH_SHELL_KEY"])...)...)
			if r.code != 0 || !regexp.MustCompile(`remote borg\s+borg `+regexp.QuoteMeta(cell.serve)+`\.\d+`).MatchString(r.stdout) {
				t.Fatalf("preflight over the shell key with BORG_REMOTE_PATH=%s must name borg %s:\n%s", serve, cell.serve, r)
			}

			r = run("init", "--json")
			var inits []struct {
				Created      bool   `json:"created"`
				KeyFile      string `json:"key_file"`
				PaperKeyFile string `json:"paper_key_file"`
			}
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &inits) != nil || len(inits) != 1 || !inits[0].Created {
				t.Fatalf("init:\n%s", r)
			}
			in := inits[0]
			if b, err := os.ReadFile(in.KeyFile); err != nil || !strings.HasPrefix(string(b), "BORG_KEY ") {
				t.Errorf("exported key %s: %v %.40q", in.KeyFile, err, b)
			}
			if b, err := os.ReadFile(in.PaperKeyFile); err != nil || !strings.Contains(string(b), "To restore key use borg key import --paper") {
				t.Errorf("exported paper key %s: %v\n%s", in.PaperKeyFile, err, b)
			}
			if cfg, err := os.ReadFile(filepath.Join(w.remoteRepoPath(), "config")); err != nil || !strings.Contains(string(cfg), "key = ") {
				t.Errorf("repository config has no repokey: %v\n%s", err, cfg)
			}

			r = run("backup", "--json")
			if r.code != 0 {
				t.Fatalf("backup:\n%s", r)
			}
			rep := decodeReport(t, r)
			if len(rep.Repositories) != 1 || !rep.Repositories[0].OK || rep.Repositories[0].Files == 0 {
				t.Fatalf("backup report: %+v\n%s", rep, r)
			}
			name := rep.Repositories[0].Archive

			r = run("archives", "--json")
			var list []Archive
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 ||
				list[0].Name != name || list[0].Checkpoint || list[0].Files != rep.Repositories[0].Files || list[0].Time.IsZero() {
				t.Fatalf("archives --json must list %s with %d files: %+v\n%s", name, rep.Repositories[0].Files, list, r)
			}

			r = run("verify")
			if r.code != 0 || !strings.Contains(r.stdout, "verdict: OK") {
				t.Fatalf("verify:\n%s", r)
			}

			dir := filepath.Join(w.dir, "restored")
			r = run("restore", name, "--target", dir)
			if r.code != 0 {
				t.Fatalf("restore --target:\n%s", r)
			}
			env, _ := os.ReadFile(h.tree.EnvFile)
			sameFile(t, env, filepath.Join(dir, "upgrade-service", ".env"))
			for _, f := range h.tree.CouchFiles {
				rel, _ := filepath.Rel(h.tree.CouchDBData, f)
				body, _ := os.ReadFile(f)
				sameFile(t, body, filepath.Join(dir, "couchdb", rel))
			}

			r = run("check")
			if r.code != 0 || !strings.Contains(r.stdout, "ok ") {
				t.Fatalf("check:\n%s", r)
			}
		})
	}
}

// A file that changes while borg 1.4 reads it (exit code 100, msgid FileChangedWarning) is the
// benign warning, exactly as with borg 1.2: exit 1, the path named, the archive written.
func TestBackupFileChangedWithBorg14IsAWarning(t *testing.T) {
	needEnv(t)
	client, err := borgSeriesPath("1.4")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	w.env = append(w.env, "CHT_BACKUP_BORG="+client)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	w.mustInit(t, w.remoteRepo())
	big := filepath.Join(h.tree.CouchDBData, "shards", h.tree.ShardRanges[0], "growing.1700000000.couch")
	f, err := os.OpenFile(big, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for i := 0; i < 256; i++ {
		f.Write(buf)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				f.Write(buf[:4096])
				time.Sleep(time.Millisecond)
			}
		}
	}()
	r := w.run(w.backupArgs(h, "--json")...)
	close(stop)
	<-done
	if r.code != 1 {
		t.Fatalf("want exit 1 (warning):\n%s", r)
	}
	rep := decodeReport(t, r)
	found := false
	for _, wn := range rep.Repositories[0].Warnings {
		if wn.Path == big && strings.Contains(wn.Message, "changed while") {
			found = true
		}
	}
	if !found || !rep.Repositories[0].OK {
		t.Fatalf("the changed file must be named in a warning and the archive kept:\n%s", r)
	}
	if names := archiveNames(t, w, w.remoteRepo()); len(names) != 1 {
		t.Fatalf("a warning still writes the archive: %v", names)
	}
}
