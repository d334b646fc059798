package restore

import (
	"context"
	"os"
	"time"
)

// TestHoldEnv is for the end-to-end tests alone, never a user setting. Set to a step's short name
// (stop, move, start), it makes an in-place restore wait after the first action of that step (the
// first container stopped, the first path moved aside, the first container started) until the
// run is interrupted, or a minute passes. Those actions take microseconds, so a test could not
// otherwise interrupt a restore in the middle of them, with the host half-changed, reliably. The
// wait is announced in the log, which is what the tests watch for.
const TestHoldEnv = "CHT_BACKUP_TEST_HOLD_AFTER"

var testHoldSteps = map[string]string{"stop": StepStop, "move": StepMove, "start": StepStart}

// holdAfterFirst waits as TestHoldEnv asks, once per run, when step is the one named.
func (p *Plan) holdAfterFirst(ctx context.Context, step string) {
	want, ok := testHoldSteps[os.Getenv(TestHoldEnv)]
	if !ok || want != step || p.held {
		return
	}
	p.held = true
	p.log.Warnf("test hold after the first action of step %q (%s is set): waiting for a signal", step, TestHoldEnv)
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
}
