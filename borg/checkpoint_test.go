package borg

import "testing"

func TestIsCheckpoint(t *testing.T) {
	for name, want := range map[string]bool{
		"chthost-2026-11-23T023000Z":                false,
		"chthost-2026-11-23T023000Z.checkpoint":     true,
		"chthost-2026-11-23T023000Z.checkpoint.1":   true,
		"chthost-2026-11-23T023000Z.checkpoint.12":  true,
		"chthost-2026-11-23T023000Z.checkpoint.x":   false,
		"chthost.checkpoint-2026-11-23T023000Z":     false,
		"chthost-2026-11-23T023000Z.checkpointless": false,
	} {
		if got := IsCheckpoint(name); got != want {
			t.Errorf("IsCheckpoint(%q) = %v, want %v", name, got, want)
		}
	}
}
