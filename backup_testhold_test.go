//go:build !testhold

package main

import (
	"context"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/restore"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// A release binary is built without the tag testhold: the variable, set by mistake or by anyone,
// must not make a backup wait between gathering and borg create.
func TestGatherHoldIsIgnoredWithoutItsBuildTag(t *testing.T) {
	t.Setenv(restore.TestHoldEnv, "gather")
	log, hook := logtest.NewNullLogger()
	done := make(chan struct{})
	go func() {
		holdAfterGather(context.Background(), log)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("holdAfterGather waited although the binary was built without the tag testhold")
	}
	if len(hook.AllEntries()) != 0 {
		t.Errorf("holdAfterGather logged without the tag: %v", hook.LastEntry())
	}
}
