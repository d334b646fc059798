//go:build testhold

package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/restore"
	"github.com/sirupsen/logrus"
)

// holdAfterGather waits, when restore.TestHoldEnv is "gather", between gathering the host and
// starting borg create, until SIGUSR1, the end of the run, or a minute. The end-to-end tests
// use it to let CouchDB begin a compaction after the backup gathered its exclusions and before
// borg reads, a moment they could not otherwise hit.
func holdAfterGather(ctx context.Context, log logrus.FieldLogger) {
	if os.Getenv(restore.TestHoldEnv) != "gather" {
		return
	}
	release := make(chan os.Signal, 1)
	signal.Notify(release, syscall.SIGUSR1)
	defer signal.Stop(release)
	log.Warnf("test hold after gathering (%s is set): waiting for SIGUSR1", restore.TestHoldEnv)
	select {
	case <-release:
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
}
