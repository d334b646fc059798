package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestVersionSaysToolCommitAndBorg(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cht-backup")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=9.8.7 -X main.commit=0123abcd", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	borgPath, err := exec.LookPath("borg")
	if err != nil {
		t.Skip("borg is not installed (scripts/test-env.sh installs it)")
	}
	want, err := exec.Command(borgPath, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	borgVersion := strings.Fields(string(want))[1]

	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] != "cht-backup 9.8.7 (commit 0123abcd)" {
		t.Errorf("--version first line: got %q", out)
	}
	if !regexp.MustCompile(`^borg ` + regexp.QuoteMeta(borgVersion) + ` \(/.+/borg\)$`).MatchString(lines[len(lines)-1]) {
		t.Errorf("--version borg line: got %q, want borg %s and its path", lines[len(lines)-1], borgVersion)
	}

	cmd := exec.Command(bin, "--version")
	cmd.Env = append(cmd.Environ(), "CHT_BACKUP_BORG=/nonexistent/borg")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "borg: /nonexistent/borg not found (install the borgbackup package or set CHT_BACKUP_BORG)") {
		t.Errorf("--version with a missing borg: %v, %q", err, out)
	}
}
