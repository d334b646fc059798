package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runWithPassphrase runs a plain borg command for test setup or inspection, with the passphrase
// in its environment (tests only; the tool itself never does this).
func runWithPassphrase(w *world, argv []string) (string, error) {
	bin := argv[0]
	if bin == "borg" {
		bin = borgBin()
	}
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Env = append(append([]string{}, w.env...), "BORG_PASSPHRASE="+w.passphrase,
		"BORG_RSH=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+testEnv["SSH_KNOWN_HOSTS"]+" -i "+testEnv["SSH_SHELL_KEY"])
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// plainExtract extracts an archive with plain borg, as a user without cht-backup would.
func plainExtract(t *testing.T, w *world, repo, archive string) string {
	t.Helper()
	dir := filepath.Join(w.dir, "extract-"+archive)
	os.MkdirAll(dir, 0o700)
	cmd := exec.Command(borgBin(), "extract", repo+"::"+archive)
	cmd.Dir = dir
	cmd.Env = append(append([]string{}, w.env...), "BORG_PASSPHRASE="+w.passphrase,
		"BORG_RSH=ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+testEnv["SSH_KNOWN_HOSTS"]+" -i "+testEnv["SSH_SHELL_KEY"])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("plain borg extract: %v\n%s", err, out)
	}
	return dir
}

// archiveNames lists a repository's archives with plain borg.
func archiveNames(t *testing.T, w *world, repo string) []string {
	t.Helper()
	out, err := runWithPassphrase(w, []string{"borg", "list", "--json", repo})
	if err != nil {
		t.Fatalf("borg list: %v\n%s", err, out)
	}
	var l struct {
		Archives []struct{ Name string } `json:"archives"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("borg list output: %v\n%s", err, out)
	}
	var names []string
	for _, a := range l.Archives {
		names = append(names, a.Name)
	}
	return names
}

// archivePaths lists an archive's item paths in archive order.
func archivePaths(t *testing.T, w *world, repo, archive string) []string {
	t.Helper()
	out, err := runWithPassphrase(w, []string{"borg", "list", "--format", "{path}{NL}", repo + "::" + archive})
	if err != nil {
		t.Fatalf("borg list archive: %v\n%s", err, out)
	}
	return strings.Split(out, "\n")
}

func sameFile(t *testing.T, want []byte, path string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("missing from the extracted archive: %s (%v)", path, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs after extract (%d bytes, want %d)", path, len(got), len(want))
	}
}
