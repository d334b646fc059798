package main

import (
	"bufio"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cht-backup/cht-backup/systemd"
	"github.com/sirupsen/logrus"
)

// runOutput is how the lines of this run leave the process. Under systemd (stderr is the
// journal stream) every line starts with its priority ("<3>" for errors, "<4>" for warnings),
// which journald stores and strips, so `journalctl -p err` shows a failed run. With
// --log-format json every line is a JSON object: log lines, the report on stdout, and the final
// error alike.
type runOutput struct {
	json    bool
	journal bool
	stderr  io.Writer // the real stderr while stderr is piped, for the final error

	mu      sync.Mutex
	restore func()          // puts os.Stdout and os.Stderr back
	done    []chan struct{} // the line copiers
	pipes   []*os.File      // their write ends
}

var output = &runOutput{}

// setupOutput fits the logger and, where lines need a priority or JSON, stdout and stderr. A
// command printing data with --json keeps its stdout as is.
func setupOutput(log *logrus.Logger, format string, dataJSON bool) {
	o := output
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.restore != nil {
		return // set up already (tests run several commands in one process)
	}
	o.json = format == "json"
	o.journal = systemd.JournalStream(os.Stderr)
	if o.journal {
		log.SetFormatter(journalFormatter{log.Formatter})
	}
	if !o.json && !o.journal {
		return
	}
	realOut, realErr := os.Stdout, os.Stderr
	o.stderr = realErr
	o.restore = func() { os.Stdout, os.Stderr = realOut, realErr }
	if !dataJSON {
		if w, err := o.copier(realOut, reportPriority); err == nil {
			os.Stdout = w
		}
	}
	if o.json {
		// Whatever writes to stderr directly (not through the logger) becomes JSON too.
		if w, err := o.copier(realErr, func(string, int) int { return systemd.PriInfo }); err == nil {
			os.Stderr = w
		}
	}
}

// copier starts a goroutine that re-emits each line written to the returned pipe, with the
// priority prio gives it (from the line and the previous line's priority).
func (o *runOutput) copier(dst io.Writer, prio func(line string, prev int) int) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	o.done = append(o.done, done)
	o.pipes = append(o.pipes, w)
	go func() {
		defer close(done)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		prev := systemd.PriInfo
		for sc.Scan() {
			prev = prio(sc.Text(), prev)
			o.emit(dst, prev, sc.Text())
		}
		io.Copy(io.Discard, r) // a line too long: never block the writer
	}()
	return w, nil
}

// emit writes one line at a priority, as text or JSON, with the journal prefix when needed.
func (o *runOutput) emit(dst io.Writer, priority int, line string) {
	var b strings.Builder
	if o.journal {
		b.WriteString(systemd.Prefix(priority))
	}
	if o.json {
		e := logrus.NewEntry(logrus.StandardLogger())
		e.Level = levelOf(priority)
		e.Message = line
		e.Time = time.Now()
		out, err := (&logrus.JSONFormatter{}).Format(e)
		if err != nil {
			return
		}
		b.Write(out)
	} else {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	io.WriteString(dst, b.String())
}

// finishOutput waits until every line written so far has left, and restores stdout and stderr.
func finishOutput() {
	o := output
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, w := range o.pipes {
		w.Close()
	}
	for _, d := range o.done {
		<-d
	}
	if o.restore != nil {
		o.restore()
	}
	o.pipes, o.done, o.restore, o.stderr = nil, nil, nil, nil
	o.json, o.journal = false, false
}

// errorLines writes the final error of a run and what to do next, at priority err.
func errorLines(msg, hint string) {
	o := output
	var dst io.Writer = os.Stderr
	if o.stderr != nil {
		dst = o.stderr
	}
	o.emit(dst, systemd.PriErr, "cht-backup: error: "+msg)
	if hint != "" {
		o.emit(dst, systemd.PriErr, "cht-backup: what to do: "+hint)
	}
}

// reportPriority reads a line of a command's report by its first word: "FAILED" and a failed
// verdict are errors, "warning" and "skipped" warnings; an indented line continues the one
// before it.
func reportPriority(line string, prev int) int {
	t := strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(t, "FAILED") || strings.HasPrefix(t, "verdict: FAILED"):
		return systemd.PriErr
	case strings.HasPrefix(t, "warning") || strings.HasPrefix(t, "skipped"):
		return systemd.PriWarning
	case t != "" && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && !strings.HasPrefix(t, "verdict:"):
		return prev
	}
	return systemd.PriInfo
}

func levelOf(priority int) logrus.Level {
	switch {
	case priority <= systemd.PriErr:
		return logrus.ErrorLevel
	case priority == systemd.PriWarning:
		return logrus.WarnLevel
	case priority >= systemd.PriDebug:
		return logrus.DebugLevel
	}
	return logrus.InfoLevel
}

func priorityOf(l logrus.Level) int {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		return systemd.PriErr
	case logrus.WarnLevel:
		return systemd.PriWarning
	case logrus.InfoLevel:
		return systemd.PriInfo
	}
	return systemd.PriDebug
}

// journalFormatter puts the entry's priority in front of each line of the inner format.
type journalFormatter struct{ inner logrus.Formatter }

func (f journalFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b, err := f.inner.Format(e)
	if err != nil {
		return nil, err
	}
	prefix := systemd.Prefix(priorityOf(e.Level))
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	var out strings.Builder
	for _, l := range lines {
		out.WriteString(prefix)
		out.WriteString(strings.TrimSuffix(l, "\n"))
		out.WriteByte('\n')
	}
	return []byte(out.String()), nil
}
