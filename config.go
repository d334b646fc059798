package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/configfile"
	"github.com/cht-backup/cht-backup/state"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

const (
	defaultConfig   = "/etc/cht-backup/cht-backup.env"
	defaultChtDir   = "/home/ubuntu/cht"
	defaultStateDir = "/var/lib/cht-backup"
	envPrefix       = "CHT_BACKUP_"
)

// envName is the environment (and config file) name of a flag: CHT_BACKUP_ + NAME with - as _.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// commonFlags are accepted by every command, on either side of its arguments.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: defaultConfig, EnvVars: []string{envName("config")}, Usage: "`FILE` of KEY=VALUE settings (CHT_BACKUP_* names), usable as a systemd EnvironmentFile"},
		&cli.StringSliceFlag{Name: "repo", EnvVars: []string{envName("repo")}, Usage: "borg repository `URL` (ssh://user@host/./path, user@host:path or a local path); repeat for several copies"},
		&cli.StringFlag{Name: "passphrase-file", EnvVars: []string{envName("passphrase-file")}, Usage: "`FILE` holding the repository passphrase (mode 0600); BORG_PASSPHRASE or BORG_PASSCOMMAND also work"},
		&cli.StringFlag{Name: "ssh-key", EnvVars: []string{envName("ssh-key")}, Usage: "private key `FILE` for the backup server, used by pre-flight and borg alike"},
		&cli.StringFlag{Name: "known-hosts", EnvVars: []string{envName("known-hosts")}, Usage: "known_hosts `FILE` for strict host-key checking (default ~/.ssh/known_hosts)"},
		&cli.StringFlag{Name: "cht-dir", Value: defaultChtDir, EnvVars: []string{envName("cht-dir")}, Usage: "CHT `DIR` holding compose/, upgrade-service/ and couchdb/"},
		&cli.StringFlag{Name: "state-dir", Value: defaultStateDir, EnvVars: []string{envName("state-dir")}, Usage: "`DIR` for state, staging, exported keys and logs"},
		&cli.DurationFlag{Name: "lock-wait", Value: 5 * time.Minute, EnvVars: []string{envName("lock-wait")}, Usage: "how long to wait (`DURATION`, e.g. 10m) when another cht-backup run holds this host's lock; 0 means do not wait"},
		&cli.IntFlag{Name: "repo-lock-wait", Value: 60, EnvVars: []string{envName("repo-lock-wait")}, Usage: "`SECONDS` borg waits for a repository lock held by another borg (e.g. a check run from another host)"},
		&cli.IntFlag{Name: "retries", Value: 3, EnvVars: []string{envName("retries")}, Usage: "`N` more tries after a connection failure (never after a wrong passphrase or host key)"},
		&cli.DurationFlag{Name: "retry-wait", Value: 30 * time.Second, EnvVars: []string{envName("retry-wait")}, Usage: "`DURATION` before the first retry; doubles each time"},
		&cli.StringFlag{Name: "metrics-file", EnvVars: []string{envName("metrics-file")}, Usage: "Prometheus textfile-collector `FILE` (default <state-dir>/metrics/cht_backup.prom)"},
		&cli.StringFlag{Name: "healthcheck-url", EnvVars: []string{envName("healthcheck-url")}, Usage: "`URL` pinged healthchecks.io style: URL/start, URL on success, URL/fail on failure"},
		&cli.StringFlag{Name: "log-format", Value: "auto", EnvVars: []string{envName("log-format")}, Usage: "`FORMAT` of log lines on stderr: auto, text or json (json for journald and log shippers)"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, EnvVars: []string{envName("verbose")}, Usage: "debug logging, including borg's own messages"},
		&cli.StringFlag{Name: "borg", Value: "borg", EnvVars: []string{envName("borg")}, Usage: "the borg `PATH` to run, e.g. a borg 1.4 unpacked beside the system's 1.2 (default: borg from PATH)"},
	}
}

// jsonFlag is taken by the commands that produce data.
var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"}

// options are the settings every command shares, resolved from flags, environment, config file
// and defaults, in that order.
type options struct {
	Repos          []borg.Repository
	PassphraseFile string
	SSHKey         string
	KnownHosts     string
	ChtDir         string
	StateDir       string
	LockWait       time.Duration // host run lock
	RepoLockWait   int           // borg's repository lock, seconds
	Retries        int
	RetryWait      time.Duration
	MetricsFile    string
	HealthcheckURL string
	JSON           bool
	Borg           string // the borg binary: a name looked up in PATH, or a path
	Log            *logrus.Logger

	// passphrase sources found in the config file (the environment wins over them)
	fileEnv map[string]string
	// settingsUnread: the config file could not be read, so the paths a run writes are unknown
	settingsUnread bool
}

// loadOptions applies the config file to every flag the command line and environment left unset,
// then reads the result.
func loadOptions(c *cli.Context) (*options, error) {
	cfgPath := c.String("config")
	fileEnv, err := readConfigFile(cfgPath, c.IsSet("config"))
	if err != nil {
		return nil, err
	}
	known := map[string]bool{"BORG_PASSPHRASE": true, "BORG_PASSCOMMAND": true}
	if c.App != nil {
		markKnown(c.App.Commands, known)
	}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		key := envName(name)
		known[key] = true
		v, ok := fileEnv[key]
		if !ok || c.IsSet(name) {
			continue
		}
		if err := c.Set(name, v); err != nil {
			return nil, usageErrorf("config file %s: bad value for %s: %v", cfgPath, key, err)
		}
	}

	switch c.String("log-format") {
	case "auto", "text", "json":
	default:
		return nil, usageErrorf("--log-format must be auto, text or json, not %q", c.String("log-format"))
	}
	log := newLogger(c.String("log-format"), c.Bool("verbose"))
	setupOutput(log, c.String("log-format"), c.Bool("json"))
	for key := range fileEnv {
		if !known[key] && strings.HasPrefix(key, envPrefix) {
			log.Warnf("config file %s: unknown setting %s (ignored)", cfgPath, key)
		}
	}

	o := &options{
		PassphraseFile: c.String("passphrase-file"),
		SSHKey:         c.String("ssh-key"),
		KnownHosts:     c.String("known-hosts"),
		ChtDir:         c.String("cht-dir"),
		StateDir:       c.String("state-dir"),
		JSON:           c.Bool("json"), // false for commands without --json
		LockWait:       c.Duration("lock-wait"),
		RepoLockWait:   c.Int("repo-lock-wait"),
		Retries:        c.Int("retries"),
		RetryWait:      c.Duration("retry-wait"),
		MetricsFile:    c.String("metrics-file"),
		HealthcheckURL: c.String("healthcheck-url"),
		Borg:           c.String("borg"),
		Log:            log,
		fileEnv:        fileEnv,
	}
	if o.MetricsFile == "" {
		o.MetricsFile = filepath.Join(o.StateDir, "metrics", "cht_backup.prom")
	}
	if o.KnownHosts == "" {
		if home, err := os.UserHomeDir(); err == nil {
			o.KnownHosts = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	seen := map[string]bool{}
	for _, raw := range c.StringSlice("repo") {
		if raw = strings.TrimSpace(raw); raw == "" || seen[raw] {
			continue
		}
		seen[raw] = true
		r, err := borg.ParseRepository(raw)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		o.Repos = append(o.Repos, r)
	}
	return o, nil
}

// readConfigFile reads the config file. The file is cht-backup's to read (the units pass it
// with --config, never as an EnvironmentFile=), and configfile refuses every line systemd would
// read differently. A file that holds the passphrase must be readable by its owner alone. A
// missing file is fine only at the default place when --config was not given.
func readConfigFile(path string, explicit bool) (map[string]string, error) {
	f, err := configfile.Read(path)
	var syntax *configfile.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return nil, &userError{err: err, hint: "fix that line; cht-backup and systemd must read the file alike (see the README, \"Config file\")", code: exitUsage}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return map[string]string{}, nil // no config file at the default place: flags and environment only
	case err != nil:
		return nil, &userError{err: err, hint: "create the config file (KEY=VALUE lines, see the README) or point --config at it", code: exitUsage}
	}
	if _, ok := f.Values["BORG_PASSPHRASE"]; ok && f.Mode&0o077 != 0 {
		return nil, &userError{err: fmt.Errorf("config file %s holds BORG_PASSPHRASE (line %d) and has mode %04o: group or others can read it", path, f.Line("BORG_PASSPHRASE"), f.Mode),
			hint: fmt.Sprintf("run `chmod 600 %s`, or move the passphrase to a --passphrase-file", path), code: exitUsage}
	}
	return f.Values, nil
}

// markKnown records every setting any command takes, so a config file shared by all commands
// (as the systemd units share one) only warns about real typos.
func markKnown(cmds []*cli.Command, known map[string]bool) {
	for _, cmd := range cmds {
		for _, f := range cmd.Flags {
			known[envName(f.Names()[0])] = true
		}
		markKnown(cmd.Subcommands, known)
	}
}

// requireRepos fails when no repository was configured.
func (o *options) requireRepos() error {
	if len(o.Repos) == 0 {
		return usageErrorf("no repository: give --repo URL (or %s in the environment or config file)", envName("repo"))
	}
	return nil
}

// passphraseFileProblem checks what a passphrase file must be: readable, a regular file, and
// readable by its owner alone.
func passphraseFileProblem(path string) (fs.FileMode, error) {
	st, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, fmt.Errorf("passphrase file %s does not exist", path)
		}
		return 0, fmt.Errorf("passphrase file %s: %v", path, err)
	}
	if !st.Mode().IsRegular() {
		return st.Mode(), fmt.Errorf("passphrase file %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return st.Mode(), fmt.Errorf("passphrase file %s has mode %04o: group or others can read it", path, st.Mode().Perm())
	}
	return st.Mode(), nil
}

// credentials resolves how borg gets the passphrase: --passphrase-file, then BORG_PASSPHRASE or
// BORG_PASSCOMMAND from the environment, then from the config file. need says whether a missing
// passphrase is an error for this command.
func (o *options) credentials(need bool) (borg.Credentials, error) {
	c := borg.Credentials{SSHKey: o.SSHKey, KnownHosts: o.KnownHosts}
	if o.PassphraseFile != "" {
		if _, err := passphraseFileProblem(o.PassphraseFile); err != nil {
			return c, &userError{err: err, hint: fmt.Sprintf("create it with the passphrase alone and run `chmod 600 %s`", o.PassphraseFile), code: exitUsage}
		}
		b, err := os.ReadFile(o.PassphraseFile)
		if err != nil {
			return c, &userError{err: fmt.Errorf("cannot read passphrase file %s: %v", o.PassphraseFile, err), hint: "run cht-backup as the user that owns the file (usually root)", code: exitUsage}
		}
		c.Passphrase = borg.NewSecret(string(b))
		if len(c.Passphrase.Bytes()) == 0 {
			return c, &userError{err: fmt.Errorf("passphrase file %s is empty", o.PassphraseFile), hint: "write the repository passphrase into it", code: exitUsage}
		}
		return c, nil
	}
	c = borg.CredentialsFromEnv(c)
	if c.Passphrase == nil && c.PassCommand == "" {
		if p, ok := o.fileEnv["BORG_PASSPHRASE"]; ok {
			c.Passphrase = borg.NewSecret(p)
		} else if pc := o.fileEnv["BORG_PASSCOMMAND"]; pc != "" {
			c.PassCommand = pc
		}
	}
	if need && c.Passphrase == nil && c.PassCommand == "" {
		return c, &userError{err: fmt.Errorf("no passphrase given"), hint: "give --passphrase-file FILE (mode 0600), or set BORG_PASSPHRASE or BORG_PASSCOMMAND", code: exitUsage}
	}
	if c.Passphrase != nil && len(c.Passphrase.Bytes()) == 0 && need {
		return c, &userError{err: fmt.Errorf("the passphrase is empty"), hint: "an empty passphrase would leave the key unprotected; set a real one", code: exitUsage}
	}
	return c, nil
}

// borgVersionCache is the file under the state dir that spares each run a `borg --version`.
const borgVersionCache = "borg-version.json"

// runner builds the borg runner shared by a command's borg calls, with the version checked.
func (o *options) runner(ctx context.Context, needPassphrase bool) (*borg.Runner, error) {
	creds, err := o.credentials(needPassphrase)
	if err != nil {
		return nil, err
	}
	r := borg.NewRunner(creds, o.Log)
	r.Binary = o.Borg
	r.LockWait = o.RepoLockWait
	// Every command that runs borg keeps things in the state dir; the version cache lives there too.
	if err := state.MakeDir(o.StateDir); err != nil {
		o.Log.Debugf("%v", err)
	}
	if _, err := r.DetectVersionCached(ctx, filepath.Join(o.StateDir, borgVersionCache)); err != nil {
		return nil, &userError{err: err, hint: "install borgbackup 1.2 or 1.4 (apt-get install borgbackup)"}
	}
	return r, nil
}
