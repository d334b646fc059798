package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

// The unit templates live with the other scripts and are built into the binary, so the binary
// alone can install its schedule.
//
//go:embed scripts/systemd/*
var systemdTemplates embed.FS

const (
	defaultUnitDir        = "/etc/systemd/system"
	defaultBackupCalendar = "*-*-* 02:30:00"
	defaultCheckCalendar  = "Sun *-*-* 04:30:00"
	defaultVerifyCalendar = "*-*-01 05:30:00"
	defaultRandomDelay    = 30 * time.Minute
	// Scheduled runs wait this long for another run (a long backup) to finish before giving up.
	scheduledLockWait = "3h"
	// A hung run is stopped before the next night's run is due.
	scheduledTimeout = "20h"
)

// Seams for the tests of install and remove on machines without systemd.
var (
	systemdRunning = func() bool {
		st, err := os.Stat("/run/systemd/system")
		return err == nil && st.IsDir()
	}
	systemctlPath = "systemctl"
)

func scheduleCommand() *cli.Command {
	calendarFlags := func() []cli.Flag {
		return []cli.Flag{
			&cli.StringFlag{Name: "on-calendar", Value: defaultBackupCalendar, Usage: "when the nightly backup runs, a systemd OnCalendar `SPEC`"},
			&cli.StringFlag{Name: "check-calendar", Value: defaultCheckCalendar, Usage: "when `borg check` runs (weekly), an OnCalendar `SPEC`"},
			&cli.StringFlag{Name: "verify-calendar", Value: defaultVerifyCalendar, Usage: "when the restore drill runs (monthly), an OnCalendar `SPEC`"},
			&cli.DurationFlag{Name: "randomized-delay", Value: defaultRandomDelay, Usage: "each start is delayed by a random time up to `DURATION`, so many servers do not start at once"},
			&cli.StringFlag{Name: "binary", Usage: "absolute `PATH` of the cht-backup the units run (default: this binary)"},
			&cli.StringFlag{Name: "unit-dir", Value: defaultUnitDir, Usage: "`DIR` the unit files go to"},
		}
	}
	return &cli.Command{
		Name:  "schedule",
		Usage: "install, remove or print the systemd timers: nightly backup, weekly check, monthly verify",
		Subcommands: []*cli.Command{
			{
				Name:  "print",
				Usage: "write the systemd units to stdout; change nothing (--server: what the backup server needs)",
				Flags: append(calendarFlags(), serverFlags()...),
				Action: scheduleAction(func(c *cli.Context, o *options, so scheduleOptions) error {
					if c.Bool("server") {
						return runSchedulePrintServer(o, serverOptionsOf(c), os.Stdout)
					}
					return runSchedulePrint(o, so, os.Stdout)
				}),
			},
			{
				Name:  "install",
				Usage: "write the units, reload systemd and enable the timers (or print cron lines where systemd does not run)",
				Description: "Writes cht-backup-{backup,check,verify}.{service,timer} to --unit-dir, runs systemctl daemon-reload\n" +
					"and enables the timers. The services run `cht-backup JOB --config FILE --lock-wait 3h`: cht-backup reads the\n" +
					"config file itself, as in a manual run. Run it again after changing the repositories, the state dir or the\n" +
					"metrics file (a run that finds a path it must write outside the units' ReadWritePaths says so).",
				Flags: calendarFlags(),
				Action: scheduleAction(func(c *cli.Context, o *options, so scheduleOptions) error {
					return runScheduleInstall(c.Context, o, so, os.Stdout, os.Stderr)
				}),
			},
			{
				Name:  "remove",
				Usage: "disable the timers and remove the units",
				Flags: []cli.Flag{&cli.StringFlag{Name: "unit-dir", Value: defaultUnitDir, Usage: "`DIR` the unit files are in"}},
				Action: scheduleAction(func(c *cli.Context, o *options, so scheduleOptions) error {
					return runScheduleRemove(c.Context, so, os.Stdout)
				}),
			},
		},
		Action: func(c *cli.Context) error {
			return usageErrorf("schedule needs a subcommand: install, remove or print")
		},
	}
}

// scheduleOptions are the settings of the units themselves.
type scheduleOptions struct {
	Binary          string
	Config          string
	BackupCalendar  string
	CheckCalendar   string
	VerifyCalendar  string
	RandomizedDelay time.Duration
	UnitDir         string
	Home            string
}

func scheduleAction(run func(c *cli.Context, o *options, so scheduleOptions) error) cli.ActionFunc {
	return withOptions(noArgs, func(c *cli.Context, o *options) error {
		so := scheduleOptions{
			Binary: c.String("binary"), Config: c.String("config"), UnitDir: c.String("unit-dir"),
			BackupCalendar: c.String("on-calendar"), CheckCalendar: c.String("check-calendar"), VerifyCalendar: c.String("verify-calendar"),
			RandomizedDelay: c.Duration("randomized-delay"),
		}
		if so.Binary == "" {
			exe, err := os.Executable()
			if err == nil {
				exe, err = filepath.EvalSymlinks(exe)
			}
			if err != nil {
				return &userError{err: fmt.Errorf("cannot tell where this cht-backup binary is: %v", err), hint: "give its absolute path with --binary"}
			}
			so.Binary = exe
			if tmp := os.TempDir(); strings.HasPrefix(exe, tmp+"/") || strings.Contains(exe, "/go-build") {
				o.Log.Warnf("the units would run %s, a temporary build; install cht-backup (e.g. in /usr/local/bin) or give --binary", exe)
			}
		}
		so.Home, _ = os.UserHomeDir()
		if so.Home == "" {
			so.Home = "/root"
		}
		return run(c, o, so)
	})
}

// scheduledJob is one service and its timer.
type scheduledJob struct {
	Job, Unit, Description, Schedule, OnCalendar string
	Then                                         []string // jobs the same service runs next, when Job did its work
}

func scheduledJobs(so scheduleOptions) []scheduledJob {
	return []scheduledJob{
		{state.JobBackup, "cht-backup-backup", "cht-backup: nightly backup of this CHT server", "nightly backup", so.BackupCalendar, nil},
		{state.JobCheck, "cht-backup-check", "cht-backup: check of the repositories (borg check), then prune", "weekly repository check and prune", so.CheckCalendar, []string{state.JobPrune}},
		{state.JobVerify, "cht-backup-verify", "cht-backup: restore drill of the latest archive", "monthly restore drill", so.VerifyCalendar, nil},
	}
}

// unitFile is one rendered unit.
type unitFile struct {
	Name    string
	Content string
}

// renderUnits fills the embedded templates. Paths are made absolute; everything a unit file
// would read as a specifier or variable is escaped.
func renderUnits(o *options, so scheduleOptions) ([]unitFile, error) {
	for _, p := range []struct{ what, path string }{{"--binary", so.Binary}, {"--config", so.Config}} {
		if !filepath.IsAbs(p.path) {
			return nil, usageErrorf("%s must be an absolute path for the units, got %q", p.what, p.path)
		}
	}
	if so.RandomizedDelay < 0 {
		return nil, usageErrorf("--randomized-delay must not be negative")
	}
	rw, err := writablePaths(o, so.Home)
	if err != nil {
		return nil, err
	}
	for _, p := range append([]string{so.Binary, so.Config, so.Home}, rw...) {
		if strings.ContainsAny(p, "\n\r") {
			return nil, usageErrorf("path %q holds a line break; a unit file cannot name it", p)
		}
	}
	var words []string
	for _, p := range rw {
		words = append(words, systemdWord(p))
	}
	tmpl, err := template.ParseFS(systemdTemplates, "scripts/systemd/*.tmpl")
	if err != nil {
		return nil, err
	}
	var units []unitFile
	for _, j := range scheduledJobs(so) {
		if err := checkCalendar(j.OnCalendar); err != nil {
			return nil, err
		}
		data := map[string]any{
			"Unit": j.Unit, "Job": j.Job, "Description": j.Description, "Schedule": j.Schedule,
			"OnCalendar": strings.ReplaceAll(j.OnCalendar, "%", "%%"), "RandomizedDelaySec": int(so.RandomizedDelay.Seconds()),
			"Binary": systemdWord(so.Binary), "Config": systemdWord(so.Config), "Home": escapePercent(so.Home),
			"LockWait": scheduledLockWait, "TimeoutStart": scheduledTimeout, "Version": version,
			"ReadWritePaths": strings.Join(words, " "), "Then": j.Then,
		}
		for _, kind := range []string{"service", "timer"} {
			var b bytes.Buffer
			if err := tmpl.ExecuteTemplate(&b, "cht-backup-job."+kind+".tmpl", data); err != nil {
				return nil, err
			}
			units = append(units, unitFile{Name: j.Unit + "." + kind, Content: b.String()})
		}
	}
	return units, nil
}

// writablePaths are what a scheduled job writes: the state dir, borg's cache and security dirs,
// local repositories, and the metrics file's directory when it is outside the state dir. All but
// the state dir carry systemd's "-" (ignore if missing): a USB disk may be unplugged.
func writablePaths(o *options, home string) ([]string, error) {
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, err
	}
	if err := notPrivateTmp("the state dir", stateDir); err != nil {
		return nil, err
	}
	paths := []string{stateDir, "-" + filepath.Join(home, ".cache", "borg"), "-" + filepath.Join(home, ".config", "borg")}
	if m, err := filepath.Abs(filepath.Dir(o.MetricsFile)); err == nil && !within(m, stateDir) {
		if err := notPrivateTmp("the metrics file", m); err != nil {
			return nil, err
		}
		paths = append(paths, "-"+m)
	}
	for _, r := range o.Repos {
		if !r.Local() {
			continue
		}
		p, err := filepath.Abs(r.Path)
		if err != nil {
			continue
		}
		if err := notPrivateTmp("repository "+r.Raw, p); err != nil {
			return nil, err
		}
		if !within(p, stateDir) {
			paths = append(paths, "-"+p)
		}
	}
	return paths, nil
}

// notPrivateTmp refuses a path the scheduled runs cannot share with manual ones: the units run
// with PrivateTmp=true, so /tmp and /var/tmp are empty, private directories for them. PrivateTmp
// stays: it keeps the runs' temporary files (borg's among them) away from other users.
func notPrivateTmp(what, p string) error {
	for _, tmp := range []string{"/tmp", "/var/tmp"} {
		if within(p, tmp) {
			return &userError{err: fmt.Errorf("%s is under %s (%s), which the scheduled runs do not see: their %s is private and empty (PrivateTmp=true), and %s may be wiped at boot", what, tmp, p, tmp, tmp),
				hint: "move it out of /tmp and /var/tmp (e.g. under /var/backups), change the config, and run `cht-backup schedule install` again", code: exitUsage}
		}
	}
	return nil
}

func within(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// systemdWord quotes one word of ExecStart= or a path list: specifiers (%) and variables ($)
// are escaped, and words with blanks, quotes or backslashes are double-quoted.
func systemdWord(s string) string {
	s = strings.ReplaceAll(escapePercent(s), "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func escapePercent(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// checkCalendar refuses what cannot be an OnCalendar value; where systemd-analyze is at hand,
// it has the last word.
func checkCalendar(spec string) error {
	if strings.TrimSpace(spec) == "" || strings.ContainsAny(spec, "\n\r") {
		return usageErrorf("calendar spec %q is empty or holds a line break", spec)
	}
	if path, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := childCommand(context.Background(), path, "calendar", spec).CombinedOutput(); err != nil {
			return usageErrorf("calendar spec %q is not valid for systemd: %s", spec, oneLine(string(out)))
		}
	}
	return nil
}

func runSchedulePrint(o *options, so scheduleOptions, out io.Writer) error {
	units, err := renderUnits(o, so)
	if err != nil {
		return err
	}
	for i, u := range units {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "### %s\n%s", filepath.Join(so.UnitDir, u.Name), u.Content)
	}
	return nil
}

func runScheduleInstall(ctx context.Context, o *options, so scheduleOptions, out, errOut io.Writer) error {
	units, err := renderUnits(o, so)
	if err != nil {
		return err
	}
	if _, err := os.Stat(so.Config); err != nil {
		o.Log.Warnf("config file %s is not there: the scheduled runs fail until it holds at least CHT_BACKUP_REPO and CHT_BACKUP_PASSPHRASE_FILE", so.Config)
	}
	if !systemdRunning() {
		fmt.Fprintf(errOut, "cht-backup: systemd is not running on this machine (no /run/systemd/system; a container?): nothing was installed.\n"+
			"cht-backup: to schedule the jobs with cron instead, put the lines below in /etc/cron.d/cht-backup.\n")
		fmt.Fprint(out, cronTable(so))
		return warnings{n: 1}
	}
	// What the hardened units may write must exist before they start.
	if err := state.MakeDir(o.StateDir); err != nil {
		return &userError{err: err, hint: "run as root, or fix --state-dir"}
	}
	for _, d := range []string{filepath.Join(so.Home, ".cache", "borg"), filepath.Join(so.Home, ".config", "borg")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return &userError{err: fmt.Errorf("cannot create borg's directory %s: %v", d, err), hint: "run as root"}
		}
	}
	// ReadWritePaths= skips a "-" path missing when the service starts, and a scheduled run
	// cannot create it in the read-only rest of the file system: the metrics dir must exist.
	if d := filepath.Dir(o.MetricsFile); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return &userError{err: fmt.Errorf("cannot create the metrics file's directory %s: %v", d, err), hint: "run as root, or fix --metrics-file"}
		}
	}
	if err := os.MkdirAll(so.UnitDir, 0o755); err != nil {
		return &userError{err: fmt.Errorf("cannot create %s: %v", so.UnitDir, err), hint: "run as root"}
	}
	for _, u := range units {
		path := filepath.Join(so.UnitDir, u.Name)
		if err := state.WriteFileAtomic(path, 0o644, func(w io.Writer) error { _, err := io.WriteString(w, u.Content); return err }); err != nil {
			return &userError{err: err, hint: "run as root"}
		}
		fmt.Fprintf(out, "wrote %s\n", path)
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	timers := unitNames(so, ".timer")
	if err := systemctl(ctx, append([]string{"enable", "--now"}, timers...)...); err != nil {
		return err
	}
	fmt.Fprintf(out, "enabled %s\n", strings.Join(timers, ", "))
	if b, err := childCommand(ctx, systemctlPath, append([]string{"list-timers", "--all", "--no-pager"}, timers...)...).Output(); err == nil {
		out.Write(b)
	}
	fmt.Fprintf(out, "the runs log to the journal (journalctl -u cht-backup-backup.service); `cht-backup status` shows how they went\n")
	return nil
}

// runScheduleRemove takes the schedule away so that nothing of it runs or stays listed: the
// timers are disabled and stopped first (no new start), then the services, running or waiting
// for the host lock, are stopped (cht-backup stops borg cleanly on SIGTERM), their failed state
// is reset, the files are removed and systemd reloads.
func runScheduleRemove(ctx context.Context, so scheduleOptions, out io.Writer) error {
	running := systemdRunning()
	var present, timers, services []string
	for _, j := range scheduledJobs(so) {
		for _, kind := range []string{".timer", ".service"} {
			if _, err := os.Stat(filepath.Join(so.UnitDir, j.Unit+kind)); err == nil {
				present = append(present, j.Unit+kind)
				if kind == ".timer" {
					timers = append(timers, j.Unit+kind)
				} else {
					services = append(services, j.Unit+kind)
				}
			}
		}
	}
	if running && len(present) > 0 {
		if len(timers) > 0 {
			if err := systemctl(ctx, append([]string{"disable", "--now"}, timers...)...); err != nil {
				return err
			}
		}
		for _, svc := range services {
			// "activating": a oneshot job running, or waiting for the host lock.
			st, _ := childCommand(ctx, systemctlPath, "is-active", svc).Output()
			if state := strings.TrimSpace(string(st)); state == "active" || state == "activating" || state == "reloading" || state == "deactivating" {
				fmt.Fprintf(out, "stopping %s (%s): borg is stopped cleanly, no archive is made\n", svc, state)
			}
		}
		if len(services) > 0 {
			if err := systemctl(ctx, append([]string{"stop"}, services...)...); err != nil {
				return err
			}
		}
		// A failed unit stays listed ("not-found failed") after its file is gone unless reset.
		_ = systemctl(ctx, append([]string{"reset-failed"}, present...)...)
	}
	for _, n := range present {
		path := filepath.Join(so.UnitDir, n)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return &userError{err: fmt.Errorf("cannot remove %s: %v", path, err), hint: "run as root"}
		}
		fmt.Fprintf(out, "removed %s\n", path)
	}
	if running && len(present) > 0 {
		if err := systemctl(ctx, "daemon-reload"); err != nil {
			return err
		}
	}
	if len(present) == 0 {
		fmt.Fprintf(out, "no cht-backup units in %s: nothing to remove\n", so.UnitDir)
	}
	if !running {
		fmt.Fprintf(out, "systemd is not running here: if you scheduled the jobs with cron, delete /etc/cron.d/cht-backup\n")
	}
	return nil
}

func unitNames(so scheduleOptions, suffix string) []string {
	var names []string
	for _, j := range scheduledJobs(so) {
		names = append(names, j.Unit+suffix)
	}
	return names
}

func systemctl(ctx context.Context, args ...string) error {
	out, err := childCommand(ctx, systemctlPath, args...).CombinedOutput()
	if err != nil {
		return &userError{err: fmt.Errorf("systemctl %s failed: %v: %s", strings.Join(args, " "), err, oneLine(string(out))),
			hint: "run as root; `systemctl status` and `journalctl -xe` say more"}
	}
	return nil
}

// cronTable is the schedule for /etc/cron.d where systemd does not run. cron neither catches up
// a run missed while the machine was off (Persistent=) nor spreads start times.
func cronTable(so scheduleOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# /etc/cron.d/cht-backup: the schedule of cht-backup %s where systemd does not run.\n", version)
	fmt.Fprintf(&b, "# Unlike the systemd timers, cron does not catch up runs missed while the machine was off.\n")
	fmt.Fprintf(&b, "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")
	for _, j := range scheduledJobs(so) {
		spec, ok := cronSpec(j.OnCalendar)
		cmd := fmt.Sprintf("root CHT_BACKUP_LOCK_WAIT=%s nice -n 10 ionice -c 3 %s %s --config %s",
			scheduledLockWait, borg.ShellQuote(so.Binary), j.Job, borg.ShellQuote(so.Config))
		for _, next := range j.Then { // only when the job before did its work (exit 0 or 1)
			cmd += fmt.Sprintf("; [ $? -le 1 ] && CHT_BACKUP_LOCK_WAIT=%s nice -n 10 ionice -c 3 %s %s --config %s",
				scheduledLockWait, borg.ShellQuote(so.Binary), next, borg.ShellQuote(so.Config))
		}
		cmd = strings.ReplaceAll(cmd, "%", `\%`) // cron turns a bare % into a newline
		if !ok {
			fmt.Fprintf(&b, "# %s: OnCalendar %q has no simple cron form; write its five time fields by hand:\n# M H DOM MON DOW %s\n", j.Schedule, j.OnCalendar, cmd)
			continue
		}
		fmt.Fprintf(&b, "# %s (OnCalendar %s)\n%s %s\n", j.Schedule, j.OnCalendar, spec, cmd)
	}
	return b.String()
}

// cronSpec translates the OnCalendar forms people use for backups into cron's five fields:
// "daily", "weekly", "monthly", "[DOW] *-*-* HH:MM[:SS]", "[DOW] *-*-DD HH:MM[:SS]", "HH:MM".
func cronSpec(cal string) (string, bool) {
	switch strings.TrimSpace(strings.ToLower(cal)) {
	case "hourly":
		return "0 * * * *", true
	case "daily":
		return "0 0 * * *", true
	case "weekly":
		return "0 0 * * 1", true
	case "monthly":
		return "0 0 1 * *", true
	}
	f := strings.Fields(cal)
	dow := "*"
	if len(f) > 0 && !strings.ContainsAny(f[0], "-:") {
		d, ok := cronWeekdays(f[0])
		if !ok {
			return "", false
		}
		dow, f = d, f[1:]
	}
	dom := "*"
	switch len(f) {
	case 1: // time alone
	case 2:
		parts := strings.Split(f[0], "-")
		if len(parts) != 3 || parts[0] != "*" || parts[1] != "*" {
			return "", false
		}
		if parts[2] != "*" {
			if !allDigits(parts[2]) {
				return "", false
			}
			dom = strings.TrimLeft(parts[2], "0")
		}
		f = f[1:]
	default:
		return "", false
	}
	hms := strings.Split(f[0], ":")
	if len(hms) < 2 || len(hms) > 3 || !allDigits(hms[0]) || !allDigits(hms[1]) || (len(hms) == 3 && hms[2] != "00" && hms[2] != "0") {
		return "", false
	}
	num := func(s string) string {
		if t := strings.TrimLeft(s, "0"); t != "" {
			return t
		}
		return "0"
	}
	return fmt.Sprintf("%s %s %s * %s", num(hms[1]), num(hms[0]), dom, dow), true
}

// cronWeekdays turns "Sun", "Mon..Fri" or "Sat,Sun" into cron's numbers.
func cronWeekdays(s string) (string, bool) {
	days := map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
	day := func(w string) (int, bool) {
		w = strings.ToLower(w)
		if len(w) < 3 {
			return 0, false
		}
		n, ok := days[w[:3]]
		return n, ok
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		if a, b, isRange := strings.Cut(part, ".."); isRange {
			x, ok1 := day(a)
			y, ok2 := day(b)
			if !ok1 || !ok2 {
				return "", false
			}
			out = append(out, fmt.Sprintf("%d-%d", x, y))
			continue
		}
		x, ok := day(part)
		if !ok {
			return "", false
		}
		out = append(out, fmt.Sprint(x))
	}
	return strings.Join(out, ","), true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// childCommand is a command whose environment holds no passphrase (BORG_PASSPHRASE may be set
// in ours): no child that does not need it inherits it.
func childCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = borg.ChildEnv(os.Environ())
	return cmd
}
