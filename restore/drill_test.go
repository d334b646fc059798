package restore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/sources"
)

// Without Docker, auto says plainly the drill could not run (not a failure), always fails, never
// skips.
func TestDrillModesWithoutDocker(t *testing.T) {
	m := &sources.Manifest{ProjectName: "cht"}
	noDocker := errors.New("cannot reach the Docker engine")
	for _, tt := range []struct {
		mode, status string
		ok           bool
	}{
		{"", DrillNotRun, true},
		{DrillAuto, DrillNotRun, true},
		{DrillAlways, DrillFailed, false},
		{DrillNever, DrillNotRun, true},
	} {
		d := DrillCouchDB(context.Background(), DrillOptions{Mode: tt.mode, DockerErr: noDocker}, m, t.TempDir())
		if d.Status != tt.status || d.OK() != tt.ok || d.Reason == "" {
			t.Errorf("mode %q: %+v, want status %s", tt.mode, d, tt.status)
		}
		if tt.mode != DrillNever && !strings.Contains(d.Reason, noDocker.Error()) {
			t.Errorf("mode %q: the reason must say why: %s", tt.mode, d.Reason)
		}
	}
	if _, err := ParseDrillMode("sometimes"); err == nil {
		t.Error("an unknown mode must be refused")
	}
}
