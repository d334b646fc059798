//go:build !testhold

package restore

import (
	"context"
	"testing"
	"time"
)

// A release binary is built without the tag testhold: the test hold's variable, set by mistake
// or by anyone, must not make an in-place restore wait half-done.
func TestTestHoldEnvIsIgnoredWithoutItsBuildTag(t *testing.T) {
	t.Setenv(TestHoldEnv, "stop")
	p := &Plan{}
	done := make(chan struct{})
	go func() {
		p.holdAfterFirst(context.Background(), StepStop)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("holdAfterFirst waited although the binary was built without the tag testhold")
	}
	if p.held {
		t.Error("the hold was taken although the binary was built without the tag testhold")
	}
}
