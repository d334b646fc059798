package borg

import (
	"reflect"
	"testing"
)

func TestPruneArgs(t *testing.T) {
	remote := mustRepo(t, "ssh://borg@backup.example:2222/./cht")
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"CHT docs policy, this host's archives", PruneArgs(remote, DefaultRetention, "chthost-*", false),
			[]string{"prune", "--log-json", "--list", "--glob-archives", "chthost-*", "--keep-within=10d", "--keep-weekly=4", "--keep-monthly=-1", "ssh://borg@backup.example:2222/./cht"}},
		{"dry run, daily only, all archives", PruneArgs(remote, Retention{Daily: 7}, "", true),
			[]string{"prune", "--log-json", "--list", "--dry-run", "--keep-daily=7", "ssh://borg@backup.example:2222/./cht"}},
		{"compact", CompactArgs(remote), []string{"compact", "--log-json", "ssh://borg@backup.example:2222/./cht"}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestRetentionValidate(t *testing.T) {
	for _, ok := range []Retention{DefaultRetention, {Daily: 7}, {Within: "12H"}, {Monthly: -1}, {Within: "1y", Weekly: -1}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []Retention{{}, {Within: "10 days"}, {Within: "0d"}, {Within: "10"}, {Daily: -2}, {Within: "-1d"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

func TestParsePruneLine(t *testing.T) {
	tests := []struct {
		in   string
		want PruneDecision
		ok   bool
	}{
		{"Would prune:                             h-b                                  Tue, 2026-12-01 11:40:39 [57cf7fda19db]",
			PruneDecision{Archive: "h-b", Time: "Tue, 2026-12-01 11:40:39"}, true},
		{"Pruning archive (1/2):                   h-a                                  Tue, 2026-12-01 11:40:37 [30c3363aca86]",
			PruneDecision{Archive: "h-a", Time: "Tue, 2026-12-01 11:40:37"}, true},
		{"Keeping archive (rule: secondly #1):     h-c                                  Tue, 2026-12-01 11:40:41 [6dc86e1a2c32]",
			PruneDecision{Archive: "h-c", Time: "Tue, 2026-12-01 11:40:41", Keep: true, Rule: "secondly #1"}, true},
		{"Keeping checkpoint archive:              h-d.checkpoint                       Tue, 2026-12-01 11:40:43 [67a8f5f370ba]",
			PruneDecision{Archive: "h-d.checkpoint", Time: "Tue, 2026-12-01 11:40:43", Keep: true, Rule: "checkpoint"}, true},
		{"Deleted data:               -1.39 kB             -1.47 kB               -960 B", PruneDecision{}, false},
	}
	for _, tt := range tests {
		got, ok := ParsePruneLine(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%q:\n got %+v %v\nwant %+v %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
