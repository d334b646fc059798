package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/restore"
	"github.com/cht-backup/cht-backup/state"
	"github.com/cht-backup/cht-backup/systemd"
	"github.com/urfave/cli/v2"
)

// newPinger is the health-check pinger of a run; tests shorten its waits.
var newPinger = func(o *options) *state.Pinger { return &state.Pinger{URL: o.HealthcheckURL, Log: o.Log} }

// withHostLock runs fn holding the host run lock, so no two runs on this host overlap (they
// share the state dir, its staging and the borg cache). Nothing is recorded: runJob records.
func withHostLock(ctx context.Context, o *options, job string, fn func(ctx context.Context) error) error {
	lock, err := state.AcquireNotify(ctx, o.StateDir, job, o.LockWait, func(h state.Holder) {
		o.Log.Infof("another cht-backup run holds this host's lock: %s; waiting up to %s for it to finish", h, o.LockWait)
	})
	if err != nil {
		var locked *state.LockedError
		switch {
		case errors.As(err, &locked):
			return &userError{err: err, code: exitLocked,
				hint: "let that run finish and start this one again (`cht-backup status` shows the last runs), or wait longer with --lock-wait DURATION; a run that was killed frees the lock by itself"}
		case ctx.Err() != nil:
			return err
		case errors.Is(err, syscall.ENOSPC):
			return &userError{err: err, hint: fmt.Sprintf("the disk holding --state-dir %s is full: free space there (df -h %s) and run again", o.StateDir, o.StateDir)}
		}
		return &userError{err: err, hint: fmt.Sprintf("check --state-dir %s: it must be a directory this user (usually root) can write", o.StateDir)}
	}
	defer func() {
		if err := lock.Release(); err != nil {
			o.Log.Errorf("releasing the host lock %s: %v", lock.Path, err)
		}
	}()
	if lock.Stale != nil {
		o.Log.Warnf("took over this host's lock from %s, which ended without releasing it (killed, or the machine went down)", *lock.Stale)
	}
	if removed, err := restore.RemoveStaleInPlaceScratch(o.ChtDir); len(removed) > 0 {
		o.Log.Warnf("removed the copy of an archive that a killed in-place restore left: %s", strings.Join(removed, ", "))
	} else if err != nil {
		o.Log.Debugf("looking for copies left by a killed in-place restore: %v", err)
	}
	return fn(ctx)
}

// runJob is how every job command (backup, check, verify, restore) runs its work: it holds the
// host run lock, pings the health-check URL at the start, runs body, records body's outcomes
// (one per repository) in the state file, rewrites the metrics file, pings success or failure,
// and returns body's error unchanged, so exit codes stay as main maps them. Outcomes may leave
// Job, Start, End, Status and ExitCode empty: runJob fills them in. When body fails before it
// has an outcome, the failure is recorded for every configured repository. A failed ping or a
// state file that cannot be written is logged and never changes the job's result.
func runJob(ctx context.Context, o *options, job string, body func(ctx context.Context) ([]state.Outcome, error)) error {
	pathErr := unitPathsProblem(o, job)
	if pathErr != nil {
		body = func(context.Context) ([]state.Outcome, error) { return nil, pathErr }
	}
	err := withHostLock(ctx, o, job, func(ctx context.Context) error {
		if err := state.RememberPingURL(o.StateDir, o.HealthcheckURL); err != nil {
			o.Log.Warnf("cannot keep the health-check URL for a run that cannot read its config: %v", err)
		}
		ping := newPinger(o)
		host, _ := os.Hostname()
		ping.Start(ctx, fmt.Sprintf("cht-backup %s started on %s", job, host))

		start := time.Now()
		outcomes, err := body(ctx)
		outcomes = completeOutcomes(o, job, start, time.Now(), outcomes, err)

		if len(outcomes) > 0 {
			f, serr := state.Record(o.StateDir, outcomes...)
			var damaged *state.CorruptError
			switch {
			case errors.As(serr, &damaged) && f != nil:
				o.Log.Warnf("%v", serr)
			case serr != nil:
				o.Log.Errorf("%v; `cht-backup status` will not show this run", serr)
			}
			if f != nil {
				if merr := state.WriteMetrics(o.MetricsFile, f); merr != nil {
					o.Log.Errorf("metrics not updated: %v", merr)
				}
			}
		}

		summary := jobSummary(job, host, outcomes, err)
		if err == nil || exitCode(err) == exitWarning {
			ping.Success(ctx, summary)
		} else {
			ping.Fail(ctx, summary)
		}
		return err
	})
	if pathErr != nil && !errors.Is(err, pathErr) {
		// The state dir itself is read-only here: the lock failed, and that says less.
		return pathErr
	}
	return err
}

// completeOutcomes fills in what body left out, and stands in for outcomes body never made.
func completeOutcomes(o *options, job string, start, end time.Time, outs []state.Outcome, err error) []state.Outcome {
	code := exitCode(err)
	if len(outs) == 0 && err != nil {
		for _, r := range o.Repos {
			oc := state.Outcome{Repository: r.Raw, Error: oneLine(err.Error()), Hint: hintOf(err)}
			if code == exitWarning {
				oc = state.Outcome{Repository: r.Raw, Warnings: []string{oneLine(err.Error())}}
			}
			outs = append(outs, oc)
		}
	}
	for i := range outs {
		oc := &outs[i]
		if oc.Job == "" {
			oc.Job = job
		}
		if oc.Start.IsZero() {
			oc.Start = start
		}
		if oc.End.IsZero() {
			oc.End = end
		}
		// Status and the default exit codes come from state's own rules (Record); a failure
		// carries the job's exit code when it is more exact, e.g. 130 when interrupted.
		if oc.Error != "" && oc.ExitCode == 0 && code >= exitFailed {
			oc.ExitCode = code
		}
		*oc = state.Complete(*oc)
	}
	return outs
}

// jobSummary is the body of the health-check ping: what ran, and how it went per repository.
func jobSummary(job, host string, outs []state.Outcome, err error) string {
	var b strings.Builder
	switch {
	case err == nil:
		fmt.Fprintf(&b, "cht-backup %s on %s: ok\n", job, host)
	default:
		fmt.Fprintf(&b, "cht-backup %s on %s: %s\n", job, host, oneLine(err.Error()))
	}
	for _, oc := range outs {
		fmt.Fprintf(&b, "%s %s", oc.Status, oc.Repository)
		if oc.Archive != "" {
			fmt.Fprintf(&b, " archive %s", oc.Archive)
		}
		if oc.Error != "" {
			fmt.Fprintf(&b, ": %s", oc.Error)
		}
		for _, w := range oc.Warnings {
			fmt.Fprintf(&b, "\n  warning: %s", w)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// backupOutcome maps one repository's backup summary onto the state's outcome; start and end
// bracket that repository's borg create.
func backupOutcome(s BackupSummary, start, end time.Time) state.Outcome {
	oc := state.Outcome{
		Job: state.JobBackup, Repository: s.Repository, Start: start, End: end,
		Archive: s.Archive, Error: s.Error, Hint: s.Hint,
		OriginalSize: s.OriginalSize, CompressedSize: s.CompressedSize, DeduplicatedSize: s.DeduplicatedSize, Files: s.Files,
		Unreadable: s.Unreadable, Missing: s.Missing,
	}
	for _, w := range s.Warnings {
		msg := w.Message
		if w.Path != "" && !strings.Contains(msg, w.Path) {
			msg = w.Path + ": " + msg
		}
		oc.Warnings = append(oc.Warnings, msg)
	}
	if !s.OK && oc.Error == "" {
		oc.Error = "failed" // the status follows from the error (state.Complete)
	}
	return oc
}

// archiveCount asks a repository how many archives it holds, for `status`; 0 when it cannot
// tell. It is one short `borg list`, worth it after a job that already reached the repository.
func archiveCount(ctx context.Context, r *borg.Runner, repo borg.Repository) int {
	l, err := archiveListing(ctx, r, repo)
	if err != nil {
		return 0
	}
	return len(l.Archives)
}

// recordedJobs are the commands a timer runs; their failures must be recorded and pinged.
var recordedJobs = map[string]bool{state.JobBackup: true, state.JobCheck: true, state.JobVerify: true}

// configFailure turns a run started by systemd that cannot read its settings (the config file
// missing or refused) into a recorded, pinged failure, since nobody watches its terminal: the
// state dir, repositories and health-check URL come from the flags and environment, or their
// defaults (the repositories else from the state file), and the URL from the last run that
// could read them. A manual run just fails.
func configFailure(c *cli.Context, err error) error {
	if !systemd.InUnit() || !recordedJobs[c.Command.Name] {
		return err
	}
	format := c.String("log-format")
	if format != "json" && format != "text" {
		format = "auto"
	}
	o := &options{StateDir: c.String("state-dir"), MetricsFile: c.String("metrics-file"), LockWait: c.Duration("lock-wait"),
		HealthcheckURL: c.String("healthcheck-url"), Log: newLogger(format, c.Bool("verbose")), settingsUnread: true}
	setupOutput(o.Log, format, false)
	if o.MetricsFile == "" {
		o.MetricsFile = filepath.Join(o.StateDir, "metrics", "cht_backup.prom")
	}
	if o.HealthcheckURL == "" {
		o.HealthcheckURL = state.RememberedPingURL(o.StateDir)
	}
	for _, raw := range c.StringSlice("repo") {
		if r, perr := borg.ParseRepository(strings.TrimSpace(raw)); perr == nil {
			o.Repos = append(o.Repos, r)
		}
	}
	cfg := c.String("config")
	if len(o.Repos) == 0 {
		// The repositories are in the unreadable file: the record stands under those the earlier
		// runs used, so `status` shows their last backup failed, or else under the file's name.
		if f, lerr := state.Load(o.StateDir); lerr == nil {
			for _, raw := range f.Repositories() {
				if r, perr := borg.ParseRepository(raw); perr == nil && raw != cfg {
					o.Repos = append(o.Repos, r)
				}
			}
		}
	}
	if len(o.Repos) == 0 {
		o.Repos = []borg.Repository{{Raw: cfg}}
	}
	return runJob(c.Context, o, c.Command.Name, func(context.Context) ([]state.Outcome, error) { return nil, err })
}

// archivesAfterCreate is a repository's archive count after a backup added one archive: the
// count the state learnt last (from a backup, or a check that lists anyway) plus one, so a backup
// spends no `borg list` of the whole repository on it. A repository that init left empty holds
// this one archive; any other that the state never counted is listed once.
func archivesAfterCreate(ctx context.Context, o *options, r *borg.Runner, repo borg.Repository, wasEmpty bool) int {
	if wasEmpty {
		return 1
	}
	if f, err := state.Load(o.StateDir); err == nil {
		if n, _, ok := f.ArchiveCount(repo.Raw); ok {
			return n + 1
		}
	}
	return archiveCount(ctx, r, repo)
}
