package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Debian package as an admin meets it: built by scripts/package.sh, installed with apt-get,
// used, removed (configuration, keys and state stay), purged (it says what it removes).
func TestDebianPackageInstallsWorksAndRemovesCleanly(t *testing.T) {
	needEnv(t)
	for _, tool := range []string{"apt-get", "dpkg-query", "man", "zsh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing; scripts/test-env.sh installs it", tool)
		}
	}
	// This test installs and purges the package: it must not run over a real installation.
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "cht-backup").Output(); len(out) > 0 && string(out) != "not-installed" {
		t.Skipf("the cht-backup package is on this machine (%s); this test would replace and purge it", out)
	}
	for _, d := range []string{"/etc/cht-backup", "/var/lib/cht-backup"} {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Skipf("%s exists; this test would install over it and purge it", d)
		}
	}
	t.Cleanup(func() {
		exec.Command("apt-get", "purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "cht-backup").Run()
		os.RemoveAll("/etc/cht-backup")
		os.RemoveAll("/var/lib/cht-backup")
	})

	out := t.TempDir()
	build := exec.Command("bash", "scripts/package.sh")
	build.Env = append(os.Environ(), "VERSION=0.0.1-e2e", "COMMIT=e2e0commit12", "OUT="+out)
	deb, err := build.Output()
	if err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, stderrOf(err))
	}
	debPath := strings.TrimSpace(string(deb))
	if filepath.Base(debPath) != "cht-backup_0.0.1~e2e_amd64.deb" && filepath.Base(debPath) != "cht-backup_0.0.1~e2e_arm64.deb" {
		t.Errorf("package file %s: want cht-backup_<version>_<arch>.deb", debPath)
	}

	apt := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("apt-get", append([]string{"-y", "-q", "-o", "DPkg::Lock::Timeout=300"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	got := apt("install", debPath)
	if !strings.Contains(got, "cht-backup: installed. Next:") {
		t.Errorf("install says nothing about the next steps:\n%s", got)
	}

	query := func(format string) string {
		b, _ := exec.Command("dpkg-query", "-W", "-f="+format, "cht-backup").Output()
		return string(b)
	}
	if got := query("${Depends}|${Recommends}"); got != "borgbackup (>= 1.2)|docker.io | docker-ce" {
		t.Errorf("Depends|Recommends = %q", got)
	}
	if got := query("${Conffiles}"); !strings.Contains(got, "/etc/cht-backup/cht-backup.env") {
		t.Errorf("the sample config is not a conffile: %q", got)
	}

	run := func(name string, args ...string) string {
		t.Helper()
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	version := strings.Split(strings.TrimSpace(run("/usr/bin/cht-backup", "--version")), "\n")
	if len(version) != 2 || version[0] != "cht-backup 0.0.1-e2e (commit e2e0commit12)" || !strings.HasPrefix(version[1], "borg 1.") {
		t.Errorf("cht-backup --version = %q", version)
	}
	if got := strings.TrimSpace(run("man", "-w", "cht-backup")); got != "/usr/share/man/man1/cht-backup.1.gz" {
		t.Errorf("man -w cht-backup = %q", got)
	}
	page := exec.Command("man", "cht-backup")
	page.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=100")
	if b, err := page.Output(); err != nil || !strings.Contains(string(b), "restore") || !strings.Contains(string(b), "--passphrase-file") {
		t.Errorf("man cht-backup: %v\n%.300s", err, b)
	}

	// The installed completion scripts, run as the shells run them on TAB.
	bash := run("bash", "-c", `source /usr/share/bash-completion/completions/cht-backup
complete -p cht-backup
COMP_WORDS=(cht-backup schedule p); COMP_CWORD=2; _cht_backup; echo "offered: ${COMPREPLY[*]}"`)
	if !strings.Contains(bash, "complete -o bashdefault -o default -F _cht_backup cht-backup") || !strings.Contains(bash, "offered: print") {
		t.Errorf("bash completion:\n%s", bash)
	}
	zsh := run("zsh", "-f", "-c", `_describe() { local -a o; o=("${(@P)${@[-1]}}"); print -l -- "offered: ${(@)o%%:*}"; }
compdef() { print -- "compdef $*"; }
source /usr/share/zsh/vendor-completions/_cht-backup
words=(cht-backup sch); CURRENT=2; _cht_backup`)
	if !strings.Contains(zsh, "compdef _cht_backup cht-backup") || !strings.Contains(zsh, "schedule") {
		t.Errorf("zsh completion:\n%s", zsh)
	}

	units := run("/usr/bin/cht-backup", "schedule", "print")
	for _, want := range []string{"ExecStart=/usr/bin/cht-backup backup", "[Timer]", "OnCalendar="} {
		if !strings.Contains(units, want) {
			t.Errorf("schedule print lacks %q:\n%.500s", want, units)
		}
	}
	for _, p := range []string{"/usr/share/cht-backup/systemd/cht-backup-job.service.tmpl", "/usr/share/cht-backup/systemd/cht-backup-job.timer.tmpl"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("unit template not installed: %v", err)
		}
	}
	// Installed, not enabled: no unit or timer link anywhere systemd would start it from.
	if enabled, _ := filepath.Glob("/etc/systemd/system/*/cht-backup*"); len(enabled) > 0 {
		t.Errorf("the package enabled units: %q", enabled)
	}
	if written, _ := filepath.Glob("/etc/systemd/system/cht-backup*"); len(written) > 0 {
		t.Errorf("the package wrote units to /etc/systemd/system: %q", written)
	}
	checkMode(t, "/etc/cht-backup", fs.ModeDir|0o700)
	checkMode(t, "/etc/cht-backup/cht-backup.env", 0o600)
	checkMode(t, "/var/lib/cht-backup", fs.ModeDir|0o711)

	// What an admin adds: a passphrase, an exported key, state.
	mustWrite(t, "/etc/cht-backup/passphrase", "not-a-real-passphrase\n", 0o600)
	os.MkdirAll("/var/lib/cht-backup/keys", 0o700)
	mustWrite(t, "/var/lib/cht-backup/keys/repo.key", "BORG_KEY not-a-real-key\n", 0o600)
	mustWrite(t, "/var/lib/cht-backup/state.json", "{}\n", 0o644)

	apt("remove", "cht-backup")
	if got := query("${db:Status-Status}"); got != "config-files" {
		t.Errorf("after remove the package is %q, want config-files", got)
	}
	for _, gone := range []string{"/usr/bin/cht-backup", "/usr/share/man/man1/cht-backup.1.gz", "/usr/share/bash-completion/completions/cht-backup"} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after remove (%v)", gone, err)
		}
	}
	for _, kept := range []string{"/etc/cht-backup/cht-backup.env", "/etc/cht-backup/passphrase", "/var/lib/cht-backup/keys/repo.key", "/var/lib/cht-backup/state.json"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("remove took %s: %v", kept, err)
		}
	}

	purged := apt("purge", "cht-backup")
	for _, want := range []string{
		"cht-backup purge: removed /etc/cht-backup/cht-backup.env and /var/lib/cht-backup/state.json",
		"cht-backup purge: kept /var/lib/cht-backup/keys",
		"cht-backup purge: kept /etc/cht-backup: passphrase",
	} {
		if !strings.Contains(purged, want) {
			t.Errorf("purge does not say %q:\n%s", want, purged)
		}
	}
	for _, gone := range []string{"/etc/cht-backup/cht-backup.env", "/var/lib/cht-backup/state.json"} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after purge (%v)", gone, err)
		}
	}
	for _, kept := range []string{"/etc/cht-backup/passphrase", "/var/lib/cht-backup/keys/repo.key"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("purge took %s, which restoring needs: %v", kept, err)
		}
	}
	if got := query("${db:Status-Status}"); got != "" && got != "not-installed" {
		t.Errorf("after purge the package is %q", got)
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if got := st.Mode() & (fs.ModeDir | fs.ModePerm); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
