package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitCreatesAppendOnlyRepokeyBlake2AndIsIdempotent(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	for _, kind := range []string{"SSH_SHELL_KEY", "SSH_FORCED_KEY"} {
		t.Run(kind, func(t *testing.T) {
			w := newWorld(t)
			args := append([]string{"init", "--repo", w.remoteRepo()}, w.common(testEnv[kind])...)
			r := w.run(args...)
			if r.code != 0 || !strings.Contains(r.stdout, "created "+w.remoteRepo()) {
				t.Fatalf("init:\n%s", r)
			}
			cfg, err := os.ReadFile(filepath.Join(w.remoteRepoPath(), "config"))
			if err != nil || !strings.Contains(string(cfg), "append_only = 1") {
				t.Fatalf("server-side repository is not append-only: %v\n%s", err, cfg)
			}
			for _, want := range []string{"BOTH the exported key and the passphrase",
				`command="borg serve --append-only --restrict-to-path ` + w.remoteRepoPath() + `",restrict ssh-ed25519 `} {
				if !strings.Contains(strings.ToUpper(r.stdout), strings.ToUpper(want)) {
					t.Errorf("init output lacks %q:\n%s", want, r)
				}
			}
			pub, _ := os.ReadFile(testEnv[kind] + ".pub")
			if !strings.Contains(r.stdout, strings.Join(strings.Fields(string(pub))[:2], " ")) {
				t.Errorf("authorized_keys line does not carry this host's public key:\n%s", r)
			}
			keys, _ := filepath.Glob(filepath.Join(w.stateDir, "keys", "*"))
			if len(keys) != 2 {
				t.Fatalf("want the key exported twice (plain and paper), got %v", keys)
			}
			for _, k := range keys {
				st, _ := os.Stat(k)
				b, _ := os.ReadFile(k)
				if st.Mode().Perm() != 0o600 || !strings.Contains(string(b), "BORG") {
					t.Errorf("%s: mode %v, content %.40q", k, st.Mode().Perm(), b)
				}
			}

			before := snapshot(t, w.remoteRepoPath())
			again := w.run(append(args, "--json")...)
			var res []InitResult
			if err := json.Unmarshal([]byte(again.stdout), &res); err != nil || again.code != 0 {
				t.Fatalf("second init: %v\n%s", err, again)
			}
			if len(res) != 1 || res[0].Created || res[0].Encryption != "repokey-blake2" {
				t.Fatalf("second init must report the existing repokey-blake2 repository: %+v", res)
			}
			if after := snapshot(t, w.remoteRepoPath()); after != before {
				t.Fatalf("second init changed the repository:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshot lists a repository's files with sizes, the part a no-op must not change.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), "lock") {
			b.WriteString(strings.TrimPrefix(p, dir) + ":" + fi.ModTime().String() + ";")
		}
		return nil
	})
	return b.String()
}

func TestInitNamesAWrongPassphrase(t *testing.T) {
	w := newWorld(t)
	args := append([]string{"init", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_SHELL_KEY"])...)
	if r := w.run(args...); r.code != 0 {
		t.Fatalf("init:\n%s", r)
	}
	os.WriteFile(w.passFile, []byte("another passphrase entirely\n"), 0o600)
	r := w.run(args...)
	if r.code != 2 || !strings.Contains(r.stderr, "passphrase") || !strings.Contains(r.stderr, "incorrect") || !strings.Contains(r.stderr, "what to do: the passphrase does not open") {
		t.Fatalf("a wrong passphrase must be named as such:\n%s", r)
	}
	if strings.Contains(r.stdout+r.stderr, "another passphrase entirely") {
		t.Fatal("the wrong passphrase was printed")
	}
}

func TestInitLocalRepositoryAndOtherMode(t *testing.T) {
	w := newWorld(t)
	repo := filepath.Join(w.dir, "local-repo")
	r := w.run(append([]string{"init", "--repo", repo}, w.common("")...)...)
	if r.code != 0 || strings.Contains(r.stdout, "authorized_keys") {
		t.Fatalf("local init:\n%s", r)
	}
	if ao, err := localAppendOnly(repo); err != nil || !ao {
		t.Fatalf("local repository not append-only: %v", err)
	}
	// A repository made with another encryption mode is an error, not silently used.
	other := filepath.Join(w.dir, "other-mode")
	cmd := []string{"borg", "init", "--encryption", "repokey", other}
	if out, err := runWithPassphrase(w, cmd); err != nil {
		t.Fatalf("borg init repokey: %v %s", err, out)
	}
	r = w.run(append([]string{"init", "--repo", other}, w.common("")...)...)
	if r.code != 2 || !strings.Contains(r.stderr, `encryption "repokey"`) {
		t.Fatalf("another mode must be an error:\n%s", r)
	}
}

func TestInitWithoutPassphraseOrRepoIsAUsageError(t *testing.T) {
	w := newWorld(t)
	r := w.run("init", "--config", w.config, "--state-dir", w.stateDir, "--repo", filepath.Join(w.dir, "r"))
	if r.code != 3 || !strings.Contains(r.stderr, "no passphrase given") {
		t.Fatalf("no passphrase:\n%s", r)
	}
	r = w.run("init", "--config", w.config, "--passphrase-file", w.passFile)
	if r.code != 3 || !strings.Contains(r.stderr, "no repository") {
		t.Fatalf("no repository:\n%s", r)
	}
	r = w.run("init", "extra-argument", "--config", w.config)
	if r.code != 3 || !strings.Contains(r.stderr, "takes no arguments") {
		t.Fatalf("extra argument:\n%s", r)
	}
	// A passphrase file others can read is refused before any repository is made.
	repo := filepath.Join(w.dir, "never-made")
	os.Chmod(w.passFile, 0o644)
	r = w.run("init", "--config", w.config, "--state-dir", w.stateDir, "--passphrase-file", w.passFile, "--repo", repo)
	if _, err := os.Stat(repo); r.code != 3 || !strings.Contains(r.stderr, w.passFile) || err == nil {
		t.Fatalf("init with a 0644 passphrase file must be refused (exit 3) and make nothing:\n%s", r)
	}
}

func TestKeyExport(t *testing.T) {
	w := newWorld(t)
	w.mustInit(t, w.remoteRepo())
	out := filepath.Join(w.dir, "exported.key")
	r := w.run(append([]string{"key", "export", "--repo", w.remoteRepo(), "--output", out}, w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("key export:\n%s", r)
	}
	b, err := os.ReadFile(out)
	st, _ := os.Stat(out)
	if err != nil || !strings.HasPrefix(string(b), "BORG_KEY ") || st.Mode().Perm() != 0o600 {
		t.Fatalf("exported key: %v mode %v %.20q", err, st.Mode().Perm(), b)
	}
	// A symlink planted where a predictable temporary name would be is never followed: the file
	// it points to keeps its content, and no temporary file is left next to the key.
	victim := filepath.Join(w.dir, "victim")
	os.WriteFile(victim, []byte("not a key"), 0o644)
	for _, suffix := range []string{".tmp", ".tmp-1", ".new"} {
		os.Symlink(victim, out+suffix)
	}
	os.Remove(out)
	r = w.run(append([]string{"key", "export", "--repo", w.remoteRepo(), "--output", out, "--paper"}, w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("key export --paper:\n%s", r)
	}
	if b, _ := os.ReadFile(victim); string(b) != "not a key" {
		t.Fatalf("key export wrote through a symlink planted next to --output: %.40q", b)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "BORG PAPER KEY") {
		t.Fatalf("paper key: %.40q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(w.dir, ".exported.key*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	r = w.run(append([]string{"key", "export", "--repo", w.remoteRepo(), "--repo", "/elsewhere", "--output", out}, w.common(testEnv["SSH_FORCED_KEY"])...)...)
	if r.code != 3 {
		t.Fatalf("--output with two repositories must be a usage error:\n%s", r)
	}
}
