package ssh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/cht-backup/cht-backup/borg"
)

// Caps on what we keep of a remote command's output: enough for any check,
// small enough that a chatty server cannot exhaust memory.
const (
	maxStdout = 1 << 20
	maxStderr = 4 << 10
)

// Run executes cmd on the server with stdin closed and returns its stdout.
// A non-zero exit is a *CommandError carrying the start of stderr.
// Cancelling ctx ends the session.
func (c *Client) Run(ctx context.Context, cmd string) (string, error) {
	stdout, _, err := c.run(ctx, cmd)
	return stdout, err
}

// run also returns stdout when the command failed, for Forced.
func (c *Client) run(ctx context.Context, cmd string) (string, string, error) {
	sess, err := c.conn.NewSession()
	if err != nil {
		return "", "", fmt.Errorf("opening an SSH session on %s: %w", c.target.Host, err)
	}
	defer sess.Close()
	stdout := &cappedBuffer{max: maxStdout}
	stderr := &cappedBuffer{max: maxStderr}
	sess.Stdout, sess.Stderr = stdout, stderr // Stdin nil: the server sees EOF at once

	if err := sess.Start(cmd); err != nil {
		return "", "", fmt.Errorf("starting remote command %q: %w", cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(xssh.SIGKILL) // OpenSSH ignores it unless configured; Close below ends the channel anyway
		sess.Close()
		return stdout.String(), stderr.String(), fmt.Errorf("remote command %q: %w", cmd, ctx.Err())
	}
	if err != nil {
		return stdout.String(), stderr.String(), commandError(cmd, stderr.String(), err)
	}
	return stdout.String(), stderr.String(), nil
}

func commandError(cmd, stderr string, err error) error {
	var exit *xssh.ExitError
	var missing *xssh.ExitMissingError
	switch {
	case errors.As(err, &exit):
		status := exit.ExitStatus()
		if exit.Signal() != "" {
			status = -1
		}
		return &CommandError{Cmd: cmd, ExitStatus: status, Stderr: oneLine(stderr, 300)}
	case errors.As(err, &missing):
		return &CommandError{Cmd: cmd, ExitStatus: -1, Stderr: oneLine(stderr, 300)}
	}
	return fmt.Errorf("remote command %q: %w", cmd, err)
}

// Forced reports whether the server replaces our commands with a forced one
// (authorized_keys command="…" or sshd ForceCommand). It asks the shell to
// print a random marker; the quotes make the printed marker differ from the
// command text, so a forced command that echoes $SSH_ORIGINAL_COMMAND does
// not fool it.
func (c *Client) Forced(ctx context.Context) (bool, error) {
	b := make([]byte, 8)
	rand.Read(b)
	marker := "cht-backup-probe-" + hex.EncodeToString(b)
	stdout, _, err := c.run(ctx, "echo 'cht-backup-probe-'"+hex.EncodeToString(b))
	var cmdErr *CommandError
	if err != nil && !errors.As(err, &cmdErr) {
		return false, err
	}
	// A forced command may exit non-zero; only the marker decides.
	return !containsLine(stdout, marker), nil
}

// BorgServeVersion asks `borg serve` for its version through borg's own RPC.
// With a forced key the server starts borg serve whatever we send; with a
// shell key our "borg serve" runs it.
func (c *Client) BorgServeVersion(ctx context.Context) (string, error) {
	sess, err := c.conn.NewSession()
	if err != nil {
		return "", fmt.Errorf("opening an SSH session on %s: %w", c.target.Host, err)
	}
	defer sess.Close()
	stdin, err := sess.StdinPipe()
	if err != nil {
		return "", err
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return "", err
	}
	stderr := &cappedBuffer{max: maxStderr}
	sess.Stderr = stderr
	if err := sess.Start(c.remoteBorg() + " serve"); err != nil {
		return "", fmt.Errorf("starting borg serve: %w", err)
	}

	type answer struct {
		version string
		err     error
	}
	ch := make(chan answer, 1)
	go func() {
		v, err := borg.ServeVersion(stdout, stdin)
		ch <- answer{v, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		sess.Close()
		return "", fmt.Errorf("waiting for borg serve to answer: %w", ctx.Err())
	}
	stdin.Close() // EOF makes borg serve exit
	if a.err == nil {
		return a.version, nil
	}

	// The exit status and stderr ("borg: command not found") explain the
	// failure better than the protocol error alone; they follow shortly.
	waited := make(chan error, 1)
	go func() {
		io.Copy(io.Discard, stdout)
		waited <- sess.Wait()
	}()
	var waitErr error
	select {
	case waitErr = <-waited:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	msg := a.err.Error()
	var exit *xssh.ExitError
	if errors.As(waitErr, &exit) && exit.Signal() == "" {
		msg += fmt.Sprintf(" (exit status %d)", exit.ExitStatus())
	}
	if s := oneLine(stderr.String(), 300); s != "" {
		msg += "; server said: " + s
	}
	return "", errors.New(msg)
}

// cappedBuffer keeps the first max bytes written and drops the rest, while
// still reporting full writes so the remote side never blocks on us.
type cappedBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
