package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/ssh"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "gather the CHT server's state and archive it to every repository",
		Description: "Checks each repository can be reached, gathers the CHT state (CouchDB data, .env, compose files,\n" +
			"and from the containers the TLS files and CouchDB credentials), then runs borg create to every --repo.\n" +
			"View indexes (.shards) are archived before database files, as CouchDB asks. A file that changed\n" +
			"while borg read it is a warning (exit 1) that names the file, not a failure.",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "dry-run", Usage: "show what would be archived; write nothing"},
			&cli.StringSliceFlag{Name: "skip", EnvVars: []string{envName("skip")}, Usage: "leave out a `PART`: " + strings.Join(sources.SkippableParts, ", ") + " (the output says what the archive lacks)"},
			&cli.StringFlag{Name: "compression", Value: "lz4", EnvVars: []string{envName("compression")}, Usage: "borg compression `SPEC`, e.g. lz4, zstd,3, none"},
			chunkerParamsFlag,
			&cli.DurationFlag{Name: "docker-timeout", Value: sources.DockerTimeout, EnvVars: []string{envName("docker-timeout")}, Usage: "give up on a Docker API call (finding a container, copying out of it) after `DURATION`"},
			&cli.StringSliceFlag{Name: "exclude", EnvVars: []string{envName("exclude")}, Usage: "borg exclude `PATTERN` (repeatable), e.g. 'sh:**/*.tmp'"},
		},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			if d := c.Duration("docker-timeout"); d > 0 {
				sources.DockerTimeout = d
			}
			chunker, err := parseChunkerFlag(c)
			if err != nil {
				return err
			}
			bo := backupOptions{
				ChunkerParams: chunker,
				DryRun:        c.Bool("dry-run"),
				Skip:          c.StringSlice("skip"),
				Compression:   c.String("compression"),
				Excludes:      c.StringSlice("exclude"),
			}
			if bo.DryRun {
				// Nothing to record, but a dry run gathers into staging too: never beside a real run.
				return withHostLock(c.Context, o, state.JobBackup, func(ctx context.Context) error {
					_, err := runBackup(ctx, o, bo, os.Stdout)
					return err
				})
			}
			return runJob(c.Context, o, state.JobBackup, func(ctx context.Context) ([]state.Outcome, error) {
				return runBackup(ctx, o, bo, os.Stdout)
			})
		}),
	}
}

type backupOptions struct {
	DryRun      bool
	Skip        []string
	Compression string
	Excludes    []string
	// ChunkerParams is --chunker-params, canonical; "" keeps each repository's own.
	ChunkerParams string
}

// BackupSummary is what one repository's backup gave.
type BackupSummary struct {
	Repository       string          `json:"repository"`
	Archive          string          `json:"archive"`
	OK               bool            `json:"ok"`
	OriginalSize     int64           `json:"original_size"`
	CompressedSize   int64           `json:"compressed_size"`
	DeduplicatedSize int64           `json:"deduplicated_size"`
	Files            int64           `json:"files"`
	DurationSeconds  float64         `json:"duration_seconds"`
	Warnings         []BackupWarning `json:"warnings,omitempty"`
	Error            string          `json:"error,omitempty"`
	Hint             string          `json:"hint,omitempty"`
	// repositoryBytes is the whole repository's size on the server (compressed, deduplicated),
	// as borg create reported it.
	repositoryBytes int64
	// unreachable: the repository's check found it could not be reached, so nothing was tried.
	unreachable   bool
	ChunkerParams string `json:"chunker_params,omitempty"`
	// ChunkerChange says that this archive was cut with new chunker params, and what that costs.
	ChunkerChange string   `json:"chunker_change,omitempty"`
	Unreadable    int      `json:"unreadable_files,omitempty"` // files borg could not read
	Missing       []string `json:"missing,omitempty"`          // parts left out because they could not be gathered
}

// BackupWarning is one thing borg warned about, e.g. a file that changed while it was read.
type BackupWarning struct {
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	// Kind: "changed while read" and "vanished while read" are what a live CouchDB does by itself;
	// "could not be read" makes the archive fail.
	Kind string `json:"kind,omitempty"`
}

// BackupReport is the whole run, as --json prints it.
type BackupReport struct {
	Host         string          `json:"host"`
	Time         time.Time       `json:"time"`
	Archive      string          `json:"archive"` // each repository's own name is in Repositories
	DryRun       bool            `json:"dry_run"`
	Skipped      []string        `json:"skipped,omitempty"`
	Missing      []string        `json:"missing,omitempty"` // parts that could not be gathered: the archive is partial
	Notes        []string        `json:"notes,omitempty"`
	Paths        []string        `json:"paths"`
	Groups       []sources.Group `json:"groups"`
	Repositories []BackupSummary `json:"repositories"`
}

// archiveName is <hostname>-<UTC time>, sortable and free of ':' (which borg reserves for ::).
func archiveName(host string, t time.Time) string {
	return host + "-" + t.UTC().Format("2006-01-02T150405Z")
}

// errNotReached stops createArchive's retries when the repository's check found it unreachable;
// the check has retried already.
var errNotReached = errors.New("repository not reached")

// maxSameSecondNames bounds how many backups of one host in one second get an archive each.
const maxSameSecondNames = 9

// runBackup backs up to every repository and returns one outcome per repository for the state
// file (none when it failed before any repository was tried: runJob records the error for all).
func runBackup(ctx context.Context, o *options, bo backupOptions, out io.Writer) ([]state.Outcome, error) {
	if err := o.requireRepos(); err != nil {
		return nil, err
	}
	for _, s := range bo.Skip {
		if !slices.Contains(sources.SkippableParts, s) {
			return nil, usageErrorf("--skip %q: choose from %s", s, strings.Join(sources.SkippableParts, ", "))
		}
	}
	r, err := o.runner(ctx, true)
	if err != nil {
		return nil, err
	}
	log := o.Log

	// 1. Each repository is checked in the background while the host is gathered, so an
	// unreachable server is named early and costs no wall time; gathering stops when none can be
	// reached.
	gatherCtx, stopGather := context.WithCancel(ctx)
	defer stopGather()
	prepCtx, stopPrep := context.WithCancel(ctx)
	defer stopPrep()
	// The chunker params recorded for each repository: read once, by the checks and by borg
	// create, which starts before its check answers when they are known.
	recorded, err := state.LoadChunking(o.StateDir)
	if err != nil {
		o.Log.Warnf("%v", err) // the params are read from each repository's newest archive instead
		recorded = map[string]state.Chunking{}
	}
	rd := prepareRepositories(prepCtx, o, r, bo.ChunkerParams, recorded, stopGather)

	// 2. Gather.
	host, _ := os.Hostname()
	now := time.Now().UTC()
	g, err := gatherHost(gatherCtx, o, r, bo, host, now)
	if err != nil {
		if gatherCtx.Err() != nil && ctx.Err() == nil { // stopped: no repository can be reached
			<-rd.all
			return unreachableOutcomes(o, rd.reach), firstError(o.Repos, rd.reach)
		}
		stopPrep()
		<-rd.all
		return nil, err
	}
	defer func() {
		if err := g.Close(); err != nil {
			log.Errorf("removing staging %s: %v", g.WorkDir, err)
		}
	}()

	holdAfterGather(ctx, log)

	report := BackupReport{Host: host, Time: now, Archive: archiveName(host, now), DryRun: bo.DryRun,
		Skipped: g.Skipped, Missing: g.Missing, Notes: g.Notes, Paths: g.Paths, Groups: g.Manifest.Groups}

	// 3. borg create to every reachable repository. Repositories on different servers or media
	// are written at once (measured faster on a 2-core host: BENCHMARKS.md); those sharing one
	// are written in turn, as they would only compete for its disk or link.
	//
	// A repository whose check has not answered yet need not wait for it when its chunker params
	// are known: borg create is started at once, as it spends its first second starting Python
	// before it connects, and the check's answer is read when borg fails (see createArchive).
	summaries := make([]BackupSummary, len(o.Repos))
	outcomes := make([]state.Outcome, len(o.Repos))
	groups := groupByMedium(o.Repos)
	live := len(groups) == 1 // one live progress line on a terminal; several would garble it
	var after sync.Mutex     // the steps after create write the state dir
	var wg sync.WaitGroup
	for _, group := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range group {
				repo := o.Repos[i]
				s := BackupSummary{Repository: repo.Raw, Archive: report.Archive}
				job := createJob{repo: repo, name: report.Archive, live: live}
				if c, ok := knownChunking(recorded, repo, bo.ChunkerParams); ok && !rd.isSettled(repo.Raw) {
					job.chunking, job.unchecked = c, rd
				} else {
					if err, _ := rd.wait(ctx, repo.Raw); err != nil {
						s.Error, s.Hint, s.unreachable = oneLine(err.Error()), hintOf(err), true
						summaries[i], outcomes[i] = s, backupOutcome(s, time.Time{}, time.Time{})
						continue
					}
					job.chunking = rd.chunkingOf(repo.Raw)
				}
				if ctx.Err() != nil {
					s.Error = "not started: the run was interrupted"
					summaries[i], outcomes[i] = s, backupOutcome(s, time.Time{}, time.Time{})
					continue
				}
				start := time.Now()
				s = createArchive(ctx, o, r, g, bo, job)
				if s.unreachable {
					summaries[i], outcomes[i] = s, backupOutcome(s, time.Time{}, time.Time{})
					continue
				}
				if s.OK && !bo.DryRun {
					s.Missing = g.Missing
				}
				oc := backupOutcome(s, start, time.Now())
				if s.OK && !bo.DryRun {
					after.Lock()
					oc.Archives = archivesAfterCreate(ctx, o, r, repo, job.chunking.Empty)
					oc.Usage = repositoryUsage(o, repo, s, rd.freeSpace(ctx, repo.Raw))
					recordChunking(o, repo, job.chunking)
					after.Unlock()
				}
				summaries[i], outcomes[i] = s, oc
			}
		}()
	}
	wg.Wait()
	stopPrep()
	<-rd.all
	if noneReached(summaries) {
		return unreachableOutcomes(o, rd.reach), firstError(o.Repos, rd.reach)
	}
	failed, warned, partial := 0, 0, 0
	for _, s := range summaries {
		switch {
		case !s.OK:
			failed++
		case len(s.Missing) > 0:
			partial++
		case len(s.Warnings) > 0:
			warned++
		}
	}
	report.Repositories = summaries

	// A repository that already held this second's name has the archive under the next free one;
	// the report names the archive the first repository that took one has.
	for _, s := range report.Repositories {
		if s.OK {
			report.Archive = s.Archive
			break
		}
	}
	if o.JSON {
		if err := writeJSON(out, report); err != nil {
			return outcomes, err
		}
	} else {
		printBackupReport(out, report)
	}
	switch {
	case ctx.Err() != nil:
		return outcomes, &userError{err: fmt.Errorf("backup interrupted"), hint: "run it again; borg left every repository consistent", code: exitInterrupted, quiet: o.JSON}
	case failed > 0:
		return outcomes, &userError{err: fmt.Errorf("backup failed for %d of %d repositories", failed, len(o.Repos)), hint: firstHint(report.Repositories)}
	case partial > 0:
		return outcomes, &userError{err: fmt.Errorf("backup partial: the archive holds CouchDB's data, .env and the compose files, but lacks %d %s that could not be gathered", len(g.Missing), plural(len(g.Missing), "part", "parts")),
			hint: "start Docker and the CHT containers (`docker ps -a` shows them), then run the backup again for a complete archive"}
	case warned > 0:
		return outcomes, warnings{n: warned}
	}
	return outcomes, nil
}

// groupByMedium splits the repositories (as indexes into repos, in their order) by what they are
// written to: a remote server by its host name, a local repository by the filesystem holding it.
func groupByMedium(repos []borg.Repository) [][]int {
	var keys []string
	byKey := map[string][]int{}
	for i, repo := range repos {
		key := "ssh:" + strings.ToLower(repo.Host)
		if repo.Local() {
			key = "path:" + repo.Path
			var st syscall.Stat_t
			for dir := repo.Path; ; dir = filepath.Dir(dir) {
				if syscall.Stat(dir, &st) == nil {
					key = fmt.Sprintf("dev:%d", st.Dev)
					break
				}
				if dir == filepath.Dir(dir) {
					break
				}
			}
		}
		if _, ok := byKey[key]; !ok {
			keys = append(keys, key)
		}
		byKey[key] = append(byKey[key], i)
	}
	groups := make([][]int, 0, len(keys))
	for _, k := range keys {
		groups = append(groups, byKey[k])
	}
	return groups
}

// createJob is one repository's borg create in a backup.
type createJob struct {
	repo     borg.Repository
	name     string
	chunking chunkingChoice
	live     bool // a live progress line on a terminal is allowed; repositories written at once log their progress
	// unchecked is set when borg create starts before the repository's check answered. A
	// failure is then read against the check: an unreachable repository is reported as such,
	// and where the check had to wait for the server, borg's failure to connect gets borg create
	// again at once.
	unchecked *repoReadiness
}

// createArchive runs borg create for one repository and reads its stats.
func createArchive(ctx context.Context, o *options, r *borg.Runner, g *sources.Gathered, bo backupOptions, job createJob) BackupSummary {
	repo, name, chunking := job.repo, job.name, job.chunking
	s := BackupSummary{Repository: repo.Raw, Archive: name, ChunkerParams: chunking.Params}
	if chunking.Previous != "" {
		s.ChunkerChange = fmt.Sprintf("chunker params change from %s to %s: this archive stores every file once more, later ones only what is new", chunking.Previous, chunking.Params)
	}
	var files int64
	var res *borg.Result
	var unreachable error
	attempt, committed := 0, false
	base, taken := name, 1
	// A dropped connection is tried again with the same archive name. When the connection broke
	// after borg committed, the retry finds the name taken: the archive is there, and done.
	// On a first attempt a taken name is another backup's of the same second (a manual run beside
	// the timer's): this one takes the next free name, base-2, base-3 and so on.
	err := withRetry(ctx, o, "borg create to "+repo.Raw, func(ctx context.Context) error {
		attempt++
		for {
			files = 0
			prog := newProgressLine(o, repo.Raw, createProgress)
			prog.terminal = prog.terminal && job.live
			var err error
			res, err = r.Run(ctx, borg.Call{
				Args: borg.CreateArgs(repo, borg.CreateOptions{Archive: name, Paths: g.Paths, Compression: bo.Compression,
					Excludes: bo.Excludes, ExcludeFrom: g.ExcludeFile, Progress: !bo.DryRun, DryRun: bo.DryRun, ChunkerParams: chunking.Params}),
				Dir:        g.WorkDir,
				OnProgress: prog.update,
				OnFile:     func(borg.FileStatus) { files++ },
			})
			prog.done()
			if rd := job.unchecked; err != nil && rd != nil {
				job.unchecked = nil
				switch reach, retried := rd.wait(ctx, repo.Raw); {
				case reach != nil:
					unreachable = reach
					return errNotReached
				case retried && retryable(err):
					o.Log.WithField("repository", repo.Raw).Debugf("borg create started while the server was being waited for, and could not connect (%v); it is reachable now", err)
					continue
				}
			}
			if !errors.Is(err, borg.ErrArchiveExists) {
				return err
			}
			if attempt > 1 {
				committed = true
				return nil
			}
			if taken >= maxSameSecondNames {
				return err
			}
			taken++
			name = fmt.Sprintf("%s-%d", base, taken)
			s.Archive = name
		}
	})
	if unreachable != nil {
		s.Error, s.Hint, s.unreachable = oneLine(unreachable.Error()), hintOf(unreachable), true
		return s
	}
	if committed {
		o.Log.WithField("repository", repo.Raw).Warnf("archive %s was committed before the connection dropped; it is complete", name)
		return committedArchive(ctx, r, repo, s)
	}
	if res != nil {
		s.DurationSeconds = res.Duration.Seconds()
		// The per-file echo of a dropped connection is left out: the error says it once.
		for _, w := range res.Reported() {
			s.Warnings = append(s.Warnings, BackupWarning{Path: w.Path, Message: w.Message, Kind: w.Kind.String()})
		}
	}
	if err != nil {
		s.Error, s.Hint = oneLine(err.Error()), hintOf(err)
		return s
	}
	s.OK = true
	if bo.DryRun {
		s.Files = files
		return s
	}
	var created struct {
		Archive borg.ArchiveInfo `json:"archive"`
		Cache   struct {
			Stats borg.Stats `json:"stats"`
		} `json:"cache"`
	}
	if err := json.Unmarshal(res.Stdout, &created); err != nil {
		s.OK = false
		s.Error = fmt.Sprintf("borg create finished but its --json output could not be read: %v", err)
		return s
	}
	st := created.Archive.Stats
	s.OriginalSize, s.CompressedSize, s.DeduplicatedSize, s.Files = st.OriginalSize, st.CompressedSize, st.DeduplicatedSize, st.NFiles
	s.DurationSeconds = created.Archive.Duration
	s.repositoryBytes = created.Cache.Stats.UniqueCSize
	// Files borg could not read are missing from the archive: that archive failed, unlike a file
	// that changed or vanished while read, which a live CouchDB does by itself.
	if unread := res.ReadErrors(r.ModernExitCodes()); len(unread) > 0 {
		s.OK = false
		s.Unreadable = len(unread)
		first := unread[0].Message
		s.Error = fmt.Sprintf("%d %s could not be read, so archive %s lacks %s: %s", len(unread),
			plural(len(unread), "file", "files"), name, plural(len(unread), "it", "them"), first)
		s.Hint = "check the file named (its permissions, and `dmesg` for disk I/O errors), then run the backup again; the files that could be read are archived"
	}
	return s
}

// committedArchive fills a summary from the archive a dropped connection did not stop from being
// committed.
func committedArchive(ctx context.Context, r *borg.Runner, repo borg.Repository, s BackupSummary) BackupSummary {
	s.OK = true
	res, err := r.Run(ctx, borg.Call{Args: borg.InfoArgs(repo, s.Archive)})
	if err != nil {
		return s // the archive exists; its figures are not known
	}
	var info borg.RepositoryInfo
	if json.Unmarshal(res.Stdout, &info) == nil && len(info.Archives) == 1 {
		st := info.Archives[0].Stats
		s.OriginalSize, s.CompressedSize, s.DeduplicatedSize, s.Files = st.OriginalSize, st.CompressedSize, st.DeduplicatedSize, st.NFiles
		s.DurationSeconds = info.Archives[0].Duration
		s.repositoryBytes = info.Cache.Stats.UniqueCSize
	}
	return s
}

// checkReachable is the short check before gathering: the SSH handshake with strict host-key
// checking for a remote repository, the path for a local one. On the same connection it asks the
// free space of the server's disk, for the full-disk estimate, when the key may run df (nil when
// it may not, or cannot tell: that never fails the check).
func checkReachable(ctx context.Context, o *options, repo borg.Repository) (free func() *int64, err error) {
	unknown := func() *int64 { return nil }
	if repo.Local() {
		if _, err := os.Stat(repo.Path + "/config"); err != nil {
			return unknown, &userError{err: fmt.Errorf("repository %s is not there (%v)", repo.Path, errors.Unwrap(err)),
				hint: "mount the medium holding it, or create it with `cht-backup init`"}
		}
		return unknown, nil
	}
	c, t, err := o.dialRepository(ctx, repo)
	if err != nil {
		return unknown, err
	}
	// A server known to force the key to borg serve is not asked: the question would start
	// borg serve there, half a second of CPU taken from borg create on a small server.
	login := serverLogin(o, t)
	if k, ok := knownServerKey(o, login); ok && k.Forced {
		c.Close()
		return unknown, nil
	}
	// The server is reached once the handshake is done. Its free space is only needed after
	// borg create, so it is asked for in the background.
	type answer struct {
		free   *int64
		forced *bool // nil: not learnt
	}
	probe := make(chan answer, 1)
	go func() {
		defer c.Close()
		f, err := c.FreeSpace(ctx, repo.Path)
		var a answer
		switch {
		case err == nil:
			n, no := int64(f), false
			a.free, a.forced = &n, &no
		case errors.Is(err, ssh.ErrForcedCommand):
			yes := true
			a.forced = &yes
		default:
			o.Log.Debugf("free space on %s not learnt: %v", repo.Host, err)
		}
		probe <- a
	}()
	var once sync.Once
	var got *int64
	return func() *int64 {
		once.Do(func() {
			select {
			case a := <-probe:
				got = a.free
				if a.forced != nil {
					learntServerKey(o, login, *a.forced)
				}
			case <-ctx.Done():
			}
		})
		return got
	}, nil
}

// noneReached says whether every repository's check found it unreachable.
func noneReached(ss []BackupSummary) bool {
	for _, s := range ss {
		if !s.unreachable {
			return false
		}
	}
	return len(ss) > 0
}

func allFailed(m map[string]error) bool {
	for _, err := range m {
		if err == nil {
			return false
		}
	}
	return true
}

func firstError(repos []borg.Repository, m map[string]error) error {
	for _, r := range repos {
		if err := m[r.Raw]; err != nil {
			return err
		}
	}
	return nil
}

func hintOf(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

func firstHint(ss []BackupSummary) string {
	for _, s := range ss {
		if s.Hint != "" {
			return s.Hint
		}
	}
	return "run again with -v to see borg's full output"
}

func printBackupReport(w io.Writer, rep BackupReport) {
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: nothing was written. Archive %s would hold, in this order:\n", rep.Archive)
		for _, p := range rep.Paths {
			fmt.Fprintf(w, "  %s\n", p)
		}
		for _, g := range rep.Groups {
			fmt.Fprintf(w, "  group %-16s %6d files %10s\n", g.Name, g.Files, sources.HumanBytes(g.Bytes))
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped: %s\n", s)
	}
	for _, s := range rep.Missing {
		fmt.Fprintf(w, "MISSING %s\n", s)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, s := range rep.Repositories {
		switch {
		case !s.OK:
			fmt.Fprintf(w, "FAILED  %s: %s\n", s.Repository, s.Error)
			if s.Hint != "" {
				fmt.Fprintf(w, "        what to do: %s\n", s.Hint)
			}
		case rep.DryRun:
			fmt.Fprintf(w, "ok      %s: %d files would be archived\n", s.Repository, s.Files)
		case len(s.Missing) > 0:
			fmt.Fprintf(w, "PARTIAL %s: archive %s, %d files, original %s; it lacks the %s listed above\n",
				s.Repository, s.Archive, s.Files, sources.HumanBytes(s.OriginalSize), plural(len(s.Missing), "part", "parts"))
		default:
			fmt.Fprintf(w, "ok      %s: archive %s, %d files, original %s, compressed %s, deduplicated %s, %s\n",
				s.Repository, s.Archive, s.Files, sources.HumanBytes(s.OriginalSize), sources.HumanBytes(s.CompressedSize),
				sources.HumanBytes(s.DeduplicatedSize), (time.Duration(s.DurationSeconds * float64(time.Second))).Round(time.Second))
		}
		if s.ChunkerChange != "" {
			fmt.Fprintf(w, "note    %s: %s\n", s.Repository, s.ChunkerChange)
		}
		for _, wn := range s.Warnings {
			fmt.Fprintf(w, "warning %s: %s\n", s.Repository, wn.Message)
		}
		if len(s.Warnings) > 0 && s.OK {
			fmt.Fprintf(w, "        the archive is complete; the files named above may be inconsistent in it and are read again next run\n")
		}
	}
}
