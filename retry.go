package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/ssh"
)

// maxRetryWait caps the doubling wait, so a large --retries does not sleep for hours.
const maxRetryWait = 10 * time.Minute

// withRetry runs fn and, when it fails because the backup server could not be reached or the
// connection dropped, runs it again up to o.Retries more times, waiting o.RetryWait before the
// first retry and twice as long before each next one. Anything else (wrong passphrase, host key,
// refused key, a locked repository, a full disk) fails at once: retrying cannot fix it. It stops
// waiting when ctx ends and returns an error that is both fn's last error and ctx's.
func withRetry(ctx context.Context, o *options, what string, fn func(ctx context.Context) error) error {
	wait := o.RetryWait
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !retryable(err) || attempt > o.Retries || ctx.Err() != nil {
			return err
		}
		o.Log.Warnf("%s failed: %s; retry %d of %d in %s", what, oneLine(err.Error()), attempt, o.Retries, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (stopped before retrying: %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// retryable reports whether err is a connection failure that may pass by itself.
func retryable(err error) bool {
	var hostKey *ssh.HostKeyError
	var auth *ssh.AuthError
	switch {
	case errors.Is(err, borg.ErrPassphraseWrong), errors.Is(err, borg.ErrHostKey), errors.Is(err, borg.ErrAuth),
		errors.As(err, &hostKey), errors.As(err, &auth),
		errors.Is(err, context.Canceled), errors.Is(err, borg.ErrCancelled):
		return false
	}
	var unreachable *ssh.UnreachableError
	return errors.Is(err, borg.ErrConnectionClosed) || errors.As(err, &unreachable)
}
