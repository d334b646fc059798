//go:build !testhold

package main

import (
	"context"

	"github.com/sirupsen/logrus"
)

// holdAfterGather does nothing: only a binary built with the tag testhold honours
// restore.TestHoldEnv.
func holdAfterGather(context.Context, logrus.FieldLogger) {}
