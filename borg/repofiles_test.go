package borg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestActivityRefusesOtherDirectories(t *testing.T) {
	if _, err := ReadActivity(t.TempDir()); err == nil {
		t.Error("an empty directory read as a repository")
	}
}

// A repository directory read without borg: its config says it is one and whether it is
// append-only, lock.exclusive says a borg holds it; no segment yet means no commit.
func TestActivityOfARepositoryWithoutSegments(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o700)
	os.WriteFile(filepath.Join(dir, "config"), []byte("[repository]\nversion = 1\nappend_only = 1\n"), 0o600)
	os.Mkdir(filepath.Join(dir, "lock.exclusive"), 0o700)
	a, err := ReadActivity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.AppendOnly || !a.Locked || !a.LastCommit.IsZero() || a.Bytes != 0 || a.Path != dir {
		t.Errorf("activity %+v", a)
	}
	os.WriteFile(filepath.Join(dir, "config"), []byte("[cache]\n"), 0o600)
	if _, err := ReadActivity(dir); !errors.Is(err, ErrNotBorgRepository) {
		t.Errorf("a config without [repository]: %v", err)
	}
	if _, err := ReadActivity(t.TempDir()); !errors.Is(err, ErrNotBorgRepository) || !strings.Contains(err.Error(), "no config file") {
		t.Errorf("a directory without config: %v", err)
	}
}
