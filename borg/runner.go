package borg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// stderrCap bounds the non-JSON stderr kept for error context.
const stderrCap = 64 << 10

// DefaultGrace is how long borg gets after SIGINT to write its checkpoint and release its lock
// before it is killed.
const DefaultGrace = 60 * time.Second

// Runner runs every borg call of the tool.
type Runner struct {
	Binary      string // default "borg"
	Credentials Credentials
	Version     Version // set by DetectVersion; gates BORG_EXIT_CODES=modern
	Grace       time.Duration
	LockWait    int // seconds borg waits for a repository lock (--lock-wait); 0 keeps borg's default
	Log         logrus.FieldLogger
}

// Call is one borg invocation.
type Call struct {
	Args       []string // from one of the *Args builders
	Dir        string   // working directory (extract target, create's staging dir)
	OnProgress func(Progress)
	OnFile     func(FileStatus)
	OnLog      func(LogMessage) // every log record at INFO level and above (e.g. prune's --list lines)
	Stdout     io.Writer        // streamed stdout (e.g. key export to stdout); default: kept in Result.Stdout
}

// Result is what a finished borg run gave.
type Result struct {
	ExitCode int
	Warned   bool
	Stdout   []byte
	Warnings []Warning
	Errors   []LogMessage
	Duration time.Duration
}

// NewRunner returns a runner for the given credentials with defaults filled in.
func NewRunner(creds Credentials, log logrus.FieldLogger) *Runner {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Runner{Binary: "borg", Credentials: creds, Grace: DefaultGrace, Log: log}
}

// DetectVersion runs `borg --version` and refuses unsupported versions.
func (r *Runner) DetectVersion(ctx context.Context) (Version, error) {
	bin := r.binary()
	if _, err := exec.LookPath(bin); err != nil {
		if strings.Contains(bin, "/") {
			return Version{}, fmt.Errorf("borg %s does not exist or is not executable: fix --borg (CHT_BACKUP_BORG)", bin)
		}
		return Version{}, fmt.Errorf("borg is not installed (%s not found in PATH): install the borgbackup package", bin)
	}
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Stdin = nil
	cmd.Env = ChildEnv(os.Environ())
	out, err := cmd.Output()
	if err != nil {
		return Version{}, fmt.Errorf("`%s --version` failed: %v", bin, err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, err
	}
	if err := CheckSupported(v); err != nil {
		return v, err
	}
	r.Version = v
	return v, nil
}

func (r *Runner) binary() string {
	if r.Binary == "" {
		return "borg"
	}
	return r.Binary
}

// Run runs borg with c.Args. A warning (exit 1) is not an error: Result.Warned and Warnings say
// so. Any failure is an *Error whose Kind can be tested with errors.Is.
func (r *Runner) Run(ctx context.Context, c Call) (*Result, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("borg: empty command")
	}
	start := time.Now()
	args := withLockWait(c.Args, r.LockWait)
	cmd := exec.Command(r.binary(), args...)
	cmd.Dir = c.Dir
	cmd.Stdin = nil // /dev/null: no prompt can hang an unattended run
	// Its own process group, so a terminal's Ctrl-C reaches borg only through us; SIGTERM when we
	// die (SIGKILL, a crash), so borg never runs on as an orphan holding the repository lock.
	// borg ends cleanly on SIGTERM too and releases its lock.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	var stdout bytes.Buffer
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	} else {
		cmd.Stdout = &stdout
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}

	// The passphrase goes through a pipe that borg reads as fd 3: never argv, never environment.
	// It is written while borg runs, not before: a passphrase larger than the pipe buffer would
	// otherwise block here, before borg exists to read it and deaf to cancellation.
	var passR, passW *os.File
	if r.Credentials.Passphrase != nil {
		passR, passW, err = os.Pipe()
		if err != nil {
			return nil, err
		}
		cmd.ExtraFiles = []*os.File{passR}
	}
	cmd.Env = r.Credentials.environ(os.Environ(), r.Version.modernExitCodes(), 3)

	log := r.Log.WithField("borg", c.Args[0])
	log.Debugf("running borg %s", strings.Join(redactArgs(c.Args), " "))
	if err := cmd.Start(); err != nil {
		if passR != nil {
			passR.Close()
			passW.Close()
		}
		return nil, fmt.Errorf("starting borg: %v", err)
	}
	if passR != nil {
		passR.Close()
		// borg may stop reading early (a newline ends the passphrase); its exit closes the pipe's
		// read end, and this write then ends with EPIPE.
		go func(b []byte) {
			_, _ = passW.Write(b)
			passW.Close()
		}(r.Credentials.Passphrase.Bytes())
	}

	// Cancellation: SIGINT to borg's process group (borg checkpoints and unlocks), a kill only
	// after the grace period.
	done := make(chan struct{})
	var cancelled bool
	var mu sync.Mutex
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		mu.Lock()
		cancelled = true
		mu.Unlock()
		log.Warn("stopping borg (SIGINT); it gets time to leave the repository consistent")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		grace := r.Grace
		if grace <= 0 {
			grace = DefaultGrace
		}
		select {
		case <-done:
		case <-time.After(grace):
			log.Error("borg did not stop in time; killing it")
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()

	res := &Result{}
	var lastErr LogMessage
	var text tailBuffer
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		ev := decodeLine(sc.Text())
		switch {
		case ev.log != nil:
			m := *ev.log
			if c.OnLog != nil && m.Level != "DEBUG" {
				c.OnLog(m)
			}
			switch m.Level {
			case "ERROR", "CRITICAL":
				res.Errors = append(res.Errors, m)
				if m.MsgID != "" || lastErr.Message == "" {
					lastErr = m
				}
				log.Debugf("borg: %s", m.Message)
			case "WARNING":
				w := parseWarning(m)
				res.Warnings = append(res.Warnings, w)
				log.Debugf("borg warning: %s", m.Message) // callers report warnings in their own words
			case "DEBUG":
				log.Debugf("borg: %s", m.Message)
			default:
				log.Debugf("borg: %s", m.Message)
			}
		case ev.progress != nil:
			if c.OnProgress != nil {
				c.OnProgress(*ev.progress)
			}
		case ev.file != nil:
			if c.OnFile != nil {
				c.OnFile(*ev.file)
			}
		case ev.text != "":
			text.add(ev.text)
			log.Debugf("borg stderr: %s", ev.text)
		}
	}
	// Drain anything a scanner error left, so borg never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, stderr)
	waitErr := cmd.Wait()
	close(done)
	res.Duration = time.Since(start)
	res.Stdout = stdout.Bytes()

	res.ExitCode = 0
	if waitErr != nil {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return res, fmt.Errorf("borg %s: %v", c.Args[0], waitErr)
		}
		res.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.ExitCode = 128 + int(ws.Signal())
		}
	}
	mu.Lock()
	wasCancelled := cancelled
	mu.Unlock()

	status := r.status(res.ExitCode)
	if status == statusOK && !wasCancelled {
		return res, nil
	}
	if status == statusWarning && !wasCancelled {
		res.Warned = true
		return res, nil
	}
	e := &Error{
		Verb:     c.Args[0],
		Target:   targetOf(c.Args),
		ExitCode: res.ExitCode,
		MsgID:    lastErr.MsgID,
		Message:  oneLine(lastErr.Message),
		Detail:   text.String(),
	}
	// Classify from everything borg said: a full disk shows up in warnings and tracebacks, ssh's
	// refusals as plain stderr lines.
	var all strings.Builder
	all.WriteString(text.String())
	for _, m := range res.Errors {
		all.WriteString("\n" + m.Message)
	}
	for _, w := range res.Warnings {
		all.WriteString("\n" + w.Message)
	}
	e.Kind = classify(e.MsgID, e.ExitCode, r.Version.modernExitCodes(), all.String())
	if e.Kind != nil && (e.MsgID == "Exception" || strings.HasSuffix(e.Message, " Exception")) {
		// borg's "Local Exception" says nothing; the kind says what happened.
		e.Message = e.Kind.Error()
	}
	if wasCancelled {
		e.Kind = ErrCancelled
		if e.Message == "" {
			e.Message = "interrupted"
		}
	}
	return res, e
}

type status int

const (
	statusOK status = iota
	statusWarning
	statusError
)

// status classifies an exit code: 0 ok, 1 warning, 2 error; with modern codes also 3-99 errors and
// 100-127 warnings; 128+N killed by signal N.
func (r *Runner) status(code int) status {
	switch {
	case code == 0:
		return statusOK
	case code == 1:
		return statusWarning
	case r.Version.modernExitCodes() && code >= 100 && code <= 127:
		return statusWarning
	default:
		return statusError
	}
}

// withLockWait adds --lock-wait right after --log-json, which every builder puts after the verb.
func withLockWait(args []string, seconds int) []string {
	if seconds <= 0 {
		return args
	}
	out := make([]string, 0, len(args)+2)
	for i, a := range args {
		out = append(out, a)
		if a == "--log-json" {
			out = append(out, "--lock-wait", strconv.Itoa(seconds))
			return append(out, args[i+1:]...)
		}
	}
	return args
}

// targetOf finds the repository or archive argument for error messages.
func targetOf(args []string) string {
	for _, a := range args[1:] {
		if strings.Contains(a, "::") {
			return a
		}
	}
	for i := len(args) - 1; i > 0; i-- {
		if !strings.HasPrefix(args[i], "-") {
			if args[0] == "key" && i == len(args)-1 && len(args) > 3 {
				continue // key export REPO FILE: the repository is before the file
			}
			return args[i]
		}
	}
	return ""
}

// redactArgs exists so no future flag can carry a secret into the debug log unnoticed: argv never
// holds one today, and anything that looks like a passphrase option is masked.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(strings.ToLower(a), "passphrase") {
			out[i] = "[redacted]"
			continue
		}
		out[i] = a
	}
	return out
}

// tailBuffer keeps the last stderrCap bytes of text lines.
type tailBuffer struct {
	lines []string
	size  int
}

func (t *tailBuffer) add(s string) {
	t.lines = append(t.lines, s)
	t.size += len(s) + 1
	for t.size > stderrCap && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

func (t *tailBuffer) String() string { return strings.Join(t.lines, "\n") }
