//go:build testhold

package restore

import (
	"context"
	"os"
	"time"
)

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
