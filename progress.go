package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
)

// progressLogEvery is how often a run without a terminal logs its progress.
const progressLogEvery = 30 * time.Second

// progressLine shows borg's progress events: a live line on a terminal, otherwise a log line at
// most every progressLogEvery. format turns an event into the line and the current path, or
// says the event is not shown.
type progressLine struct {
	o        *options
	repo     string
	format   func(borg.Progress) (line, path string, ok bool)
	terminal bool
	mu       sync.Mutex
	last     time.Time
	shown    bool
}

func newProgressLine(o *options, repo string, format func(borg.Progress) (string, string, bool)) *progressLine {
	return &progressLine{o: o, repo: repo, format: format, terminal: isTerminal(os.Stderr) && !o.JSON, last: time.Now()}
}

func (p *progressLine) update(ev borg.Progress) {
	if ev.Finished {
		p.done()
		return
	}
	line, path, ok := p.format(ev)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		if len(path) > 60 {
			path = "…" + path[len(path)-59:]
		}
		fmt.Fprintf(os.Stderr, "\r\033[K%s  %s", line, path)
		p.shown = true
		return
	}
	if time.Since(p.last) >= progressLogEvery {
		p.last = time.Now()
		p.o.Log.WithField("repository", p.repo).Infof("progress: %s", line)
	}
}

// done clears the live line.
func (p *progressLine) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(os.Stderr, "\r\033[K")
		p.shown = false
	}
}

// createProgress formats borg create's archive_progress.
func createProgress(ev borg.Progress) (string, string, bool) {
	if ev.Type != "archive_progress" {
		return "", "", false
	}
	return fmt.Sprintf("%d files, %s read, %s new", ev.NFiles, sources.HumanBytes(ev.OSize), sources.HumanBytes(ev.DSize)), ev.Path, true
}

// extractProgress formats borg extract's progress_percent.
func extractProgress(ev borg.Progress) (string, string, bool) {
	if ev.Type != "progress_percent" || ev.Total <= 0 {
		return "", "", false
	}
	_, path, _ := strings.Cut(ev.Message, "Extracting: ")
	return fmt.Sprintf("extracting: %5.1f%%, %s of %s", ev.Current/ev.Total*100, sources.HumanBytes(int64(ev.Current)), sources.HumanBytes(int64(ev.Total))), path, true
}

// checkProgress formats borg check's progress messages.
func checkProgress(ev borg.Progress) (string, string, bool) {
	if ev.Type != "progress_percent" && ev.Type != "progress_message" {
		return "", "", false
	}
	msg := strings.TrimSpace(ev.Message)
	return "check: " + msg, "", msg != ""
}
