package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

const (
	defaultMaxAge       = 26 * time.Hour
	defaultDiskWarnDays = 30
)

// statusLimits are what status holds the repositories to.
type statusLimits struct {
	MaxAge       time.Duration
	DiskWarnDays int
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show each repository's last backup, check and verify, and the 3-2-1 picture; a monitoring probe",
		Description: "Reads the state file only: fast, and it works when the backup server is down.\n" +
			"Exit 0: every repository has a successful backup younger than --max-age.\n" +
			"Exit 1: backups are recent, but the last backup, check, verify or prune of a repository failed, or its disk\n" +
			"is estimated full within --disk-warn-days.\n" +
			"Exit 2: a repository's last successful backup is older than --max-age, or there is none.",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.DurationFlag{Name: "max-age", Value: defaultMaxAge, EnvVars: []string{envName("max-age")}, Usage: "a successful backup older than `DURATION` (e.g. 26h) makes status exit 2"},
			&cli.IntFlag{Name: "disk-warn-days", Value: defaultDiskWarnDays, EnvVars: []string{envName("disk-warn-days")}, Usage: "warn (exit 1) when the backup disk is estimated full within `DAYS` at the current growth"},
		},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			if c.Duration("max-age") <= 0 {
				return usageErrorf("--max-age must be a positive duration such as 26h, not %s", c.Duration("max-age"))
			}
			if c.Int("disk-warn-days") < 0 {
				return usageErrorf("--disk-warn-days must be 0 or more, not %d", c.Int("disk-warn-days"))
			}
			return runStatus(c.Context, o, statusLimits{MaxAge: c.Duration("max-age"), DiskWarnDays: c.Int("disk-warn-days")}, time.Now(), os.Stdout)
		}),
	}
}

// StatusReport is what `status --json` prints.
type StatusReport struct {
	Time          time.Time          `json:"time"`
	MaxAgeSeconds float64            `json:"max_age_seconds"`
	StateFile     string             `json:"state_file"`
	Running       *state.Holder      `json:"running,omitempty"` // the run holding the host lock now
	Repositories  []RepositoryStatus `json:"repositories"`
	Copies        Copies             `json:"copies"`
	Advice        []string           `json:"advice"`
	ExitCode      int                `json:"exit_code"`
}

// RepositoryStatus is one repository as status sees it.
type RepositoryStatus struct {
	Repository  string `json:"repository"`
	Location    string `json:"location"` // in plain words, e.g. "another server"
	OffHost     bool   `json:"off_host"`
	OtherMedium bool   `json:"other_medium"` // not on the disk holding the CHT data
	SameDisk    bool   `json:"same_disk"`    // a local path on the CHT data's filesystem

	LastBackup           *state.Outcome `json:"last_backup,omitempty"`
	LastSuccessfulBackup *state.Outcome `json:"last_successful_backup,omitempty"`
	BackupAgeSeconds     *float64       `json:"backup_age_seconds,omitempty"` // age of the last successful backup
	LastCheck            *state.Outcome `json:"last_check,omitempty"`
	LastVerify           *state.Outcome `json:"last_verify,omitempty"`
	LastPrune            *state.Outcome `json:"last_prune,omitempty"`
	Disk                 *state.Growth  `json:"disk,omitempty"` // size, growth and days until full
	Archives             *int           `json:"archives,omitempty"`
	Warnings             []string       `json:"warnings,omitempty"` // of the last backup

	// Health: "ok", "attention" (exit 1) or "stale" (exit 2); Problems says why.
	Health   string   `json:"health"`
	Problems []string `json:"problems,omitempty"`
}

// Copies is the 3-2-1 picture: copies of the data, how many are off this host, how many on
// another medium than the CHT data.
type Copies struct {
	Repositories int `json:"repositories"`
	OffHost      int `json:"off_host"`
	OtherMedium  int `json:"other_medium"`
	SameDisk     int `json:"same_disk"`
}

func runStatus(ctx context.Context, o *options, limits statusLimits, now time.Time, out io.Writer) error {
	maxAge := limits.MaxAge
	f, err := state.Load(o.StateDir)
	var damaged *state.CorruptError
	switch {
	case errors.As(err, &damaged):
		return &userError{err: err, hint: "the next job run sets the damaged state file aside and starts a new one"}
	case err != nil:
		return &userError{err: err, hint: "check --state-dir, and run status as root or as a user that may read " + state.Path(o.StateDir)}
	}
	rep := StatusReport{Time: now.UTC(), MaxAgeSeconds: maxAge.Seconds(), StateFile: state.Path(o.StateDir)}
	if h, err := state.ReadHolder(o.StateDir); err == nil && h != nil {
		rep.Running = h
	}

	repos := o.Repos
	if len(repos) == 0 {
		// No configuration at hand (e.g. a monitoring user): the state file names them.
		for _, raw := range f.Repositories() {
			if r, err := borg.ParseRepository(raw); err == nil {
				repos = append(repos, r)
			}
		}
	}
	stale, attention := 0, 0
	for _, r := range repos {
		rs := repositoryStatus(f, r, o.ChtDir, maxAge, now)
		diskStatus(&rs, f, limits.DiskWarnDays, now)
		switch rs.Health {
		case "stale":
			stale++
		case "attention":
			attention++
		}
		rep.Copies.Repositories++
		if rs.OffHost {
			rep.Copies.OffHost++
		}
		if rs.OtherMedium {
			rep.Copies.OtherMedium++
		}
		if rs.SameDisk {
			rep.Copies.SameDisk++
		}
		rep.Repositories = append(rep.Repositories, rs)
	}
	rep.Advice = advice321(rep.Copies)
	switch {
	case stale > 0 || len(repos) == 0:
		rep.ExitCode = exitFailed
	case attention > 0:
		rep.ExitCode = exitWarning
	}

	if o.JSON {
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	} else {
		printStatus(out, rep, now)
	}

	switch {
	case len(repos) == 0:
		return &userError{err: fmt.Errorf("no backup has been recorded in %s and no repository is configured", rep.StateFile),
			hint: "set CHT_BACKUP_REPO in the config file, run `cht-backup init` and `cht-backup backup`, then `cht-backup schedule install`"}
	case stale > 0:
		return &userError{err: fmt.Errorf("%d of %d repositories have no successful backup younger than %s", stale, len(repos), maxAge),
			hint: "see the problems listed above; `journalctl -u cht-backup-backup.service` shows the nightly runs, `cht-backup backup` runs one now"}
	case attention > 0:
		return warnings{n: attention}
	}
	return nil
}

func repositoryStatus(f *state.File, r borg.Repository, chtDir string, maxAge time.Duration, now time.Time) RepositoryStatus {
	rs := RepositoryStatus{Repository: r.Raw}
	rs.Location, rs.OffHost, rs.OtherMedium, rs.SameDisk = locate(r, chtDir)
	if e := f.Find(state.JobBackup, r.Raw); e != nil {
		last := e.LastRun
		rs.LastBackup = &last
		rs.LastSuccessfulBackup = e.LastSuccess
		rs.Warnings = last.Warnings
	}
	if e := f.Find(state.JobCheck, r.Raw); e != nil {
		last := e.LastRun
		rs.LastCheck = &last
	}
	if e := f.Find(state.JobVerify, r.Raw); e != nil {
		last := e.LastRun
		rs.LastVerify = &last
	}
	if e := f.Find(state.JobPrune, r.Raw); e != nil {
		last := e.LastRun
		rs.LastPrune = &last
	}
	if n, _, ok := f.ArchiveCount(r.Raw); ok {
		rs.Archives = &n
	}

	rs.Health = "ok"
	if s := rs.LastSuccessfulBackup; s == nil {
		rs.Health = "stale"
		rs.Problems = append(rs.Problems, "no successful backup recorded")
	} else {
		age := now.Sub(s.End).Seconds()
		rs.BackupAgeSeconds = &age
		if now.Sub(s.End) > maxAge {
			rs.Health = "stale"
			rs.Problems = append(rs.Problems, fmt.Sprintf("the last successful backup is %s old, more than --max-age %s", humanAge(now.Sub(s.End)), maxAge))
		}
	}
	for _, j := range []struct {
		name string
		o    *state.Outcome
	}{{"backup", rs.LastBackup}, {"check", rs.LastCheck}, {"verify", rs.LastVerify}, {"prune", rs.LastPrune}} {
		if j.o != nil && j.o.Status == state.StatusPartial {
			if rs.Health == "ok" {
				rs.Health = "attention"
			}
			rs.Problems = append(rs.Problems, fmt.Sprintf("the last %s is partial (%s ago): archive %s lacks %s", j.name, humanAge(now.Sub(j.o.End)), j.o.Archive, strings.Join(j.o.Missing, "; ")))
		}
		if j.o != nil && j.o.Status == state.StatusFailed {
			if rs.Health == "ok" {
				rs.Health = "attention"
			}
			p := fmt.Sprintf("the last %s failed %s ago", j.name, humanAge(now.Sub(j.o.End)))
			if j.o.Error != "" {
				p += ": " + j.o.Error
			}
			rs.Problems = append(rs.Problems, p)
		}
	}
	return rs
}

// locate says where a repository is, in plain words, and what it counts for in 3-2-1.
func locate(r borg.Repository, chtDir string) (where string, offHost, otherMedium, sameDisk bool) {
	if !r.Local() {
		if isThisHost(r.Host) {
			return "this host, over SSH", false, false, false
		}
		return "another server (" + r.Host + ")", true, true, false
	}
	repoDev, err := deviceOf(r.Path)
	if err != nil {
		return "a local path that is not there now (is its disk mounted?)", false, false, false
	}
	dataDev, err := deviceOf(chtDir)
	if err != nil {
		return "a local path (cannot tell whether it shares a disk with the CHT data)", false, false, false
	}
	if repoDev == dataDev {
		return "a local path on the same filesystem as the CHT data", false, false, true
	}
	return "a local path on another filesystem than the CHT data", false, true, false
}

func deviceOf(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Clean(path), &st); err != nil {
		return 0, err
	}
	return uint64(st.Dev), nil
}

func isThisHost(host string) bool {
	h := strings.Trim(strings.ToLower(host), "[]")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	name, _ := os.Hostname()
	return name != "" && (h == strings.ToLower(name) || strings.HasPrefix(h, strings.ToLower(name)+"."))
}

// advice321 explains, in plain words, how far the repositories are from the 3-2-1 rule: three
// copies of the data, on two kinds of media, one of them off site.
func advice321(c Copies) []string {
	if c.Repositories == 0 {
		return []string{"There is no backup repository: the CHT data exists only on this server. Configure one with --repo (CHT_BACKUP_REPO) and run `cht-backup init`."}
	}
	var a []string
	if c.OffHost == 0 {
		a = append(a, "No copy is off this host: a fire, theft, ransomware or a wiped server takes the backups with the data. Add a repository on another server (--repo ssh://user@server/./cht).")
	}
	if c.Repositories < 2 {
		a = append(a, "There is one backup copy: 3-2-1 asks for two besides the live data, so one bad disk or one lost server is not the end. Add a second repository: another server, or a USB disk (--repo /mnt/usb/cht).")
	}
	if c.OtherMedium == 0 {
		a = append(a, "Every copy sits on the same disk as the CHT data: one disk failure loses them all. Put a repository on another disk or another server.")
	}
	met := len(a) == 0
	if c.SameDisk > 0 && c.OtherMedium > 0 {
		a = append(a, fmt.Sprintf("%d %s on the same filesystem as the CHT data: it guards against mistakes, not against losing the disk, so it does not count as another medium.",
			c.SameDisk, plural(c.SameDisk, "repository is", "repositories are")))
	}
	if met {
		a = append(a, fmt.Sprintf("3-2-1 is met: %d copies besides the live data, %d on other media, %d off this host. Make sure the other server stands in another building, and keep the repository key exported (`cht-backup key export`) somewhere safe away from this server.", c.Repositories, c.OtherMedium, c.OffHost))
	}
	return a
}

func printStatus(w io.Writer, rep StatusReport, now time.Time) {
	if rep.Running != nil {
		fmt.Fprintf(w, "running now: %s\n", rep.Running)
	}
	if len(rep.Repositories) == 0 {
		fmt.Fprintf(w, "no repository configured and no run recorded in %s\n", rep.StateFile)
	}
	for _, r := range rep.Repositories {
		fmt.Fprintf(w, "repository %s\n", r.Repository)
		fmt.Fprintf(w, "  where:            %s\n", r.Location)
		if s := r.LastSuccessfulBackup; s != nil {
			line := fmt.Sprintf("%s (%s ago), archive %s", when(s.End), humanAge(now.Sub(s.End)), s.Archive)
			if s.Files > 0 || s.OriginalSize > 0 {
				line += fmt.Sprintf(", %d files, %s, %s new", s.Files, sources.HumanBytes(s.OriginalSize), sources.HumanBytes(s.DeduplicatedSize))
			}
			fmt.Fprintf(w, "  last backup ok:   %s\n", line)
		} else {
			fmt.Fprintf(w, "  last backup ok:   never\n")
		}
		if l := r.LastBackup; l != nil && (r.LastSuccessfulBackup == nil || !l.End.Equal(r.LastSuccessfulBackup.End)) {
			fmt.Fprintf(w, "  last backup run:  %s\n", outcomeLine(*l, now))
		}
		fmt.Fprintf(w, "  last check:       %s\n", optionalOutcome(r.LastCheck, now))
		fmt.Fprintf(w, "  last verify:      %s\n", optionalOutcome(r.LastVerify, now))
		if r.LastVerify != nil {
			fmt.Fprintf(w, "  couchdb drill:    %s\n", drillLine(r.LastVerify.CouchDB))
		}
		if r.LastPrune != nil {
			fmt.Fprintf(w, "  last prune:       %s\n", outcomeLine(*r.LastPrune, now))
		}
		fmt.Fprintf(w, "  disk:             %s\n", diskLine(r.Disk))
		if r.Archives != nil {
			fmt.Fprintf(w, "  archives:         %d\n", *r.Archives)
		} else {
			fmt.Fprintf(w, "  archives:         not counted yet\n")
		}
		if len(r.Warnings) > 0 {
			fmt.Fprintf(w, "  warnings:         %d in the last backup\n", len(r.Warnings))
			for _, wn := range r.Warnings {
				fmt.Fprintf(w, "    %s\n", wn)
			}
		}
		for _, p := range r.Problems {
			label := "ATTENTION"
			if r.Health == "stale" {
				label = "PROBLEM"
			}
			fmt.Fprintf(w, "  %s: %s\n", label, p)
		}
	}
	c := rep.Copies
	fmt.Fprintf(w, "3-2-1: %d %s besides the live data, %d off this host, %d on another medium than the CHT data\n",
		c.Repositories, plural(c.Repositories, "copy", "copies"), c.OffHost, c.OtherMedium)
	for _, a := range rep.Advice {
		fmt.Fprintf(w, "  %s\n", a)
	}
}

// drillLine says whether CouchDB itself opened the copy the last verify restored.
func drillLine(d *state.CouchDBDrill) string {
	if d == nil {
		return "not recorded: that verify compared the files only"
	}
	switch d.Status {
	case "passed":
		var names []string
		for _, db := range d.Databases {
			names = append(names, db.Name)
		}
		version := ""
		if d.Version != "" {
			version = " " + d.Version
		}
		return fmt.Sprintf("passed: CouchDB%s opened %d %s in the restored copy (%s)", version, len(d.Databases),
			plural(len(d.Databases), "database", "databases"), strings.Join(names, ", "))
	case "failed":
		var bad []string
		for _, db := range d.Databases {
			if !db.OK {
				bad = append(bad, db.Name+": "+db.Problem)
			}
		}
		if len(bad) == 0 && d.Reason != "" {
			bad = append(bad, d.Reason)
		}
		return "FAILED: " + strings.Join(bad, "; ")
	default:
		line := "not run"
		if d.Reason != "" {
			line += ": " + d.Reason
		}
		return line + " (the files were compared, but CouchDB did not open the copy)"
	}
}

func optionalOutcome(o *state.Outcome, now time.Time) string {
	if o == nil {
		return "never"
	}
	return outcomeLine(*o, now)
}

func outcomeLine(o state.Outcome, now time.Time) string {
	s := fmt.Sprintf("%s %s (%s ago)", o.Status, when(o.End), humanAge(now.Sub(o.End)))
	if o.Error != "" {
		s += ": " + o.Error
	} else if len(o.Warnings) > 0 {
		s += fmt.Sprintf(", %d %s", len(o.Warnings), plural(len(o.Warnings), "warning", "warnings"))
	}
	return s
}

func when(t time.Time) string { return t.Local().Format("2006-01-02 15:04 MST") }

// humanAge rounds an age the way a person says it: 42s, 17m, 5h12m, 3 days.
func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// diskStatus adds the size history's estimate and, when the disk is full within warnDays at
// the current growth, a problem that makes status exit 1.
func diskStatus(rs *RepositoryStatus, f *state.File, warnDays int, now time.Time) {
	rs.Disk = f.Growth(rs.Repository, now)
	g := rs.Disk
	if g == nil || g.DaysUntilFull == nil || *g.DaysUntilFull >= float64(warnDays) {
		return
	}
	if rs.Health == "ok" {
		rs.Health = "attention"
	}
	rs.Problems = append(rs.Problems, fmt.Sprintf("the backup disk is full in about %.0f days at the growth of the last %d backups (%s a day, %s free): "+
		"free space on the backup server, or prune harder (prune --keep-within, --keep-monthly) and let the server compact", *g.DaysUntilFull, g.Samples,
		sources.HumanBytes(int64(g.FillPerDay)), sources.HumanBytes(*g.FreeBytes)))
}

func diskLine(g *state.Growth) string {
	if g == nil {
		return "size not recorded yet (the next backup records it)"
	}
	s := sources.HumanBytes(g.Bytes) + " in the repository"
	if !g.Rated {
		s += ", growth per day known once the recorded backups span a day"
	} else {
		sign := "+"
		if g.BytesPerDay < 0 {
			sign = "-"
		}
		s += fmt.Sprintf(", %s%s a day over %d backups", sign, sources.HumanBytes(int64(math.Abs(g.BytesPerDay))), g.Samples)
	}
	switch {
	case g.FreeBytes == nil:
		s += "; free space unknown (the SSH key runs borg only: `cht-backup overdue` on the backup server reports it)"
	case g.DaysUntilFull != nil:
		s += fmt.Sprintf(", %s free: full in about %.0f days", sources.HumanBytes(*g.FreeBytes), *g.DaysUntilFull)
	default:
		s += fmt.Sprintf(", %s free", sources.HumanBytes(*g.FreeBytes))
	}
	return s
}
