package borg

import (
	"testing"
)

func TestActivityRefusesOtherDirectories(t *testing.T) {
	if _, err := ReadActivity(t.TempDir()); err == nil {
		t.Error("an empty directory read as a repository")
	}
}
