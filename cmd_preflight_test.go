package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/ssh/sshtest"
	"github.com/cht-backup/cht-backup/state"
)

func TestPreflightPassesWithEitherKeyKind(t *testing.T) {
	for _, kind := range []string{"SSH_SHELL_KEY", "SSH_FORCED_KEY"} {
		t.Run(kind, func(t *testing.T) {
			w := newWorld(t)
			r := w.run(append([]string{"preflight", "--repo", w.remoteRepo()}, w.common(testEnv[kind])...)...)
			if r.code != 0 || !strings.Contains(r.stdout, "preflight passed") {
				t.Fatalf("want a pass:\n%s", r)
			}
			for _, want := range []string{"borg 1.", testEnv["SSH_HOST_KEY_FINGERPRINT"], "remote borg"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, r)
				}
			}
			if kind == "SSH_SHELL_KEY" {
				for _, want := range []string{"whoami       borg", "clock skew", "free on the repository filesystem"} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("shell key: output lacks %q:\n%s", want, r)
					}
				}
			} else if !strings.Contains(r.stdout, "forces this key to `borg serve`") {
				t.Errorf("forced key not recognised:\n%s", r)
			}
			// What the key may run is kept, so that backups need not ask it again.
			sf, err := state.Load(w.stateDir)
			login := fmt.Sprintf("%s@%s:%s key %s", testEnv["SSH_USER"], testEnv["SSH_HOST"], testEnv["SSH_PORT"], testEnv[kind])
			if k, ok := sf.ServerKey(login, time.Now()); err != nil || !ok || k.Forced != (kind == "SSH_FORCED_KEY") {
				t.Errorf("want %s recorded as forced=%v: %+v (%v)", login, kind == "SSH_FORCED_KEY", sf, err)
			}

			j := w.run(append([]string{"preflight", "--json", "--repo", w.remoteRepo()}, w.common(testEnv[kind])...)...)
			var l Checklist
			if err := json.Unmarshal([]byte(j.stdout), &l); err != nil || !l.OK || len(l.Checks) < 5 || j.code != 0 {
				t.Fatalf("--json: %v\n%s", err, j)
			}
		})
	}
}

// Each bad setup ends with exactly one FAIL line that says what is wrong, and a fix line.
func TestPreflightFailsClearly(t *testing.T) {
	needEnv(t)
	dir := t.TempDir()
	emptyKH := filepath.Join(dir, "empty_known_hosts")
	os.WriteFile(emptyKH, nil, 0o600)
	otherHost := filepath.Join(dir, "other_host")
	stranger := filepath.Join(dir, "stranger")
	for _, k := range []string{otherHost, stranger} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(otherHost + ".pub")
	changedKH := filepath.Join(dir, "changed_known_hosts")
	os.WriteFile(changedKH, []byte("[127.0.0.1]:"+testEnv["SSH_PORT"]+" "+strings.Join(strings.Fields(string(pub))[:2], " ")+"\n"), 0o600)
	loosePass := filepath.Join(dir, "loose_passphrase")
	os.WriteFile(loosePass, []byte("x\n"), 0o644)
	os.Chmod(loosePass, 0o644)

	fp := testEnv["SSH_HOST_KEY_FINGERPRINT"]
	tests := []struct {
		name  string
		edit  func(w *world, args []string) []string
		wants []string
	}{
		{"unknown host key", func(w *world, a []string) []string { return replaceFlag(a, "--known-hosts", emptyKH) },
			[]string{"unknown", fp, "ssh-keyscan"}},
		{"changed host key", func(w *world, a []string) []string { return replaceFlag(a, "--known-hosts", changedKH) },
			[]string{"CHANGED", fp, "ssh-keygen -R"}},
		{"wrong user key", func(w *world, a []string) []string { return replaceFlag(a, "--ssh-key", stranger) },
			[]string{"refused", "authorized_keys"}},
		{"server down", func(w *world, a []string) []string {
			return replaceFlag(a, "--repo", strings.Replace(w.remoteRepo(), ":"+testEnv["SSH_PORT"]+"/", fmt.Sprintf(":%d/", sshtest.ClosedPort(w.t)), 1))
		}, []string{"cannot reach", "refused"}},
		{"world-readable passphrase file", func(w *world, a []string) []string { return replaceFlag(a, "--passphrase-file", loosePass) },
			[]string{"0644", "chmod 600"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			args := append([]string{"preflight", "--repo", w.remoteRepo()}, w.common(testEnv["SSH_SHELL_KEY"])...)
			r := w.run(tt.edit(w, args)...)
			if r.code != 2 {
				t.Fatalf("want exit 2:\n%s", r)
			}
			fails := lines(r.stdout, "[FAIL]")
			if len(fails) != 1 {
				t.Fatalf("want exactly one FAIL line, got %d:\n%s", len(fails), r)
			}
			all := fails[0] + "\n" + strings.Join(lines(r.stdout, "fix:"), "\n")
			for _, want := range tt.wants {
				if !strings.Contains(all, want) {
					t.Errorf("failure lines lack %q:\n%s", want, r)
				}
			}
			if !strings.Contains(r.stdout, "preflight FAILED") {
				t.Errorf("no overall verdict:\n%s", r)
			}
		})
	}
}

func replaceFlag(args []string, flag, value string) []string {
	out := append([]string{}, args...)
	for i := range out {
		if out[i] == flag && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}

func TestPreflightLocalRepositoryIsCheckedAsAPath(t *testing.T) {
	w := newWorld(t)
	repo := filepath.Join(w.dir, "usb", "cht")
	os.MkdirAll(filepath.Dir(repo), 0o700)
	r := w.run(append([]string{"preflight", "--repo", repo, "--cht-dir", w.dir}, w.common("")...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "does not exist yet") || strings.Contains(r.stdout, "host key") {
		t.Fatalf("local path not checked as a path:\n%s", r)
	}
	if !strings.Contains(r.stdout, "same filesystem") {
		t.Errorf("a repository on the CHT data's own disk should get a warning:\n%s", r)
	}
	notRepo := filepath.Join(w.dir, "notrepo")
	os.MkdirAll(notRepo, 0o700)
	os.WriteFile(filepath.Join(notRepo, "photo.jpg"), []byte("x"), 0o600)
	r = w.run(append([]string{"preflight", "--repo", notRepo}, w.common("")...)...)
	if r.code != 2 || len(lines(r.stdout, "[FAIL]")) != 1 || !strings.Contains(r.stdout, "not a borg repository") {
		t.Fatalf("a non-empty non-repository directory must fail:\n%s", r)
	}
}
