package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/ssh"
	"github.com/cht-backup/cht-backup/state"
	"github.com/mattn/go-shellwords"
	"github.com/urfave/cli/v2"
)

func preflightCommand() *cli.Command {
	return &cli.Command{
		Name:  "preflight",
		Usage: "check everything a backup needs: local borg, passphrase, state dir, and the path to each repository",
		Description: "Runs the checks the CHT backup docs ask for before the first backup. Over SSH it verifies the\n" +
			"server's host key against --known-hosts, logs in with --ssh-key, and reports the remote borg version,\n" +
			"user, clock skew, hostname and free space. A key forced to `borg serve` (a hardened server) is\n" +
			"recognised and its borg version is asked through borg itself. Exit 0 only when every required check passes.",
		Flags: []cli.Flag{jsonFlag},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			return runPreflight(c, o, os.Stdout)
		}),
	}
}

// Check is one line of the pre-flight checklist.
type Check struct {
	Repository string `json:"repository,omitempty"`
	Name       string `json:"name"`
	Status     string `json:"status"` // ok, fail, warn, info
	Detail     string `json:"detail"`
	Hint       string `json:"hint,omitempty"`
}

// Checklist collects checks; it passes when no check failed.
type Checklist struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

func (l *Checklist) add(repo, name, status, detail, hint string) {
	l.Checks = append(l.Checks, Check{Repository: repo, Name: name, Status: status, Detail: detail, Hint: hint})
}

func (l *Checklist) ok(repo, name, detail string)   { l.add(repo, name, "ok", detail, "") }
func (l *Checklist) info(repo, name, detail string) { l.add(repo, name, "info", detail, "") }
func (l *Checklist) warn(repo, name, detail, hint string) {
	l.add(repo, name, "warn", detail, hint)
}
func (l *Checklist) fail(repo, name, detail, hint string) { l.add(repo, name, "fail", detail, hint) }

// failErr records a failure from an error, using its Hint when it has one.
func (l *Checklist) failErr(repo, name string, err error, fallbackHint string) {
	hint := fallbackHint
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		hint = h.Hint()
	}
	l.fail(repo, name, oneLine(err.Error()), hint)
}

func (l *Checklist) passed() bool {
	for _, c := range l.Checks {
		if c.Status == "fail" {
			return false
		}
	}
	return true
}

// print writes the checklist for a person: one line per check, a hint line under each problem.
func (l *Checklist) print(w io.Writer) {
	last := "\x00"
	for _, c := range l.Checks {
		if c.Repository != last {
			if c.Repository == "" {
				fmt.Fprintln(w, "this host")
			} else {
				fmt.Fprintf(w, "repository %s\n", c.Repository)
			}
			last = c.Repository
		}
		mark := map[string]string{"ok": " ok ", "fail": "FAIL", "warn": "warn", "info": "info"}[c.Status]
		fmt.Fprintf(w, "  [%s] %-12s %s\n", mark, c.Name, c.Detail)
		if c.Hint != "" && (c.Status == "fail" || c.Status == "warn") {
			fmt.Fprintf(w, "         %-12s fix: %s\n", "", c.Hint)
		}
	}
	if l.passed() {
		fmt.Fprintln(w, "preflight passed")
	} else {
		fmt.Fprintln(w, "preflight FAILED: fix the lines marked FAIL and run it again")
	}
}

// maxClockSkew is where a skewed clock becomes worth a warning: archive names and times, TLS
// and log correlation all go wrong, though borg itself keeps working.
const maxClockSkew = time.Minute

// minFreeBytes is the least free space on the repository filesystem that does not get a warning.
const minFreeBytes = 1 << 30

func runPreflight(c *cli.Context, o *options, out io.Writer) error {
	var l Checklist
	ctx := c.Context

	// Local checks.
	r := borg.NewRunner(borg.Credentials{}, o.Log)
	r.Binary = o.Borg
	if v, err := r.DetectVersion(ctx); err != nil {
		l.failErr("", "borg", err, "install borgbackup 1.2 or 1.4 (apt-get install borgbackup)")
	} else {
		l.ok("", "borg", fmt.Sprintf("borg %s installed (supported)", v))
	}
	checkPassphraseSource(&l, o)
	checkStateDir(&l, o.StateDir)
	if len(o.Repos) == 0 {
		l.fail("", "repository", "no repository configured", fmt.Sprintf("give --repo URL (or %s)", envName("repo")))
	}

	for _, repo := range o.Repos {
		if repo.Local() {
			checkLocalRepository(&l, o, repo)
			continue
		}
		checkRemoteRepository(c, &l, o, repo)
	}

	l.OK = l.passed()
	if o.JSON {
		if err := writeJSON(out, l); err != nil {
			return err
		}
	} else {
		l.print(out)
	}
	if !l.OK {
		return &userError{err: errors.New("preflight failed"), code: exitFailed, quiet: true}
	}
	return nil
}

func checkPassphraseSource(l *Checklist, o *options) {
	switch {
	case o.PassphraseFile != "":
		mode, err := passphraseFileProblem(o.PassphraseFile)
		if err != nil {
			l.fail("", "passphrase", err.Error(), fmt.Sprintf("keep the passphrase alone in the file and run `chmod 600 %s`", o.PassphraseFile))
			return
		}
		f, err := os.Open(o.PassphraseFile)
		if err != nil {
			l.fail("", "passphrase", fmt.Sprintf("cannot read passphrase file %s: %v", o.PassphraseFile, errors.Unwrap(err)), "run cht-backup as the file's owner (usually root)")
			return
		}
		buf := make([]byte, 1)
		n, _ := f.Read(buf)
		f.Close()
		if n == 0 {
			l.fail("", "passphrase", fmt.Sprintf("passphrase file %s is empty", o.PassphraseFile), "write the repository passphrase into it")
			return
		}
		l.ok("", "passphrase", fmt.Sprintf("file %s readable, mode %04o", o.PassphraseFile, mode.Perm()))
	default:
		creds, err := o.credentials(true)
		switch {
		case err != nil:
			l.failErr("", "passphrase", err, "")
		case creds.PassCommand != "":
			if err := tryPassCommand(creds.PassCommand); err != nil {
				l.fail("", "passphrase", "BORG_PASSCOMMAND "+err.Error(), "make the command print the passphrase and exit 0")
			} else {
				l.ok("", "passphrase", "BORG_PASSCOMMAND prints a passphrase")
			}
		default:
			l.ok("", "passphrase", "BORG_PASSPHRASE is set (a --passphrase-file with mode 0600 keeps it out of the environment)")
		}
	}
}

// shellSplit splits BORG_PASSCOMMAND into words as borg does (Python's shlex.split, no
// shell): whitespace separates words, quotes and backslashes group them. go-shellwords stops
// at a shell operator (; | & < >); borg would pass it on as a word, so a pipeline that only
// works in a shell is rejected here with what to do instead.
func shellSplit(s string) ([]string, error) {
	p := shellwords.NewParser()
	words, err := p.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cannot be split into words: %v", err)
	}
	if p.Position >= 0 {
		return nil, errors.New("uses a shell operator (; | & < >), but borg runs it without a shell; wrap it as sh -c '...' or put it in a script")
	}
	if len(words) == 0 {
		return nil, nil
	}
	return words, nil
}

// tryPassCommand runs BORG_PASSCOMMAND as borg would (shlex split, no shell) and checks it
// prints something, without keeping what it printed.
func tryPassCommand(cmdline string) error {
	fields, err := shellSplit(cmdline)
	if err != nil {
		return err
	}
	if len(fields) == 0 {
		return errors.New("is empty")
	}
	cmd := exec.Command(fields[0], fields[1:]...)
	cmd.Env = borg.ChildEnv(os.Environ())
	out, err := cmd.Output()
	defer func() {
		for i := range out {
			out[i] = 0
		}
	}()
	if err != nil {
		return fmt.Errorf("failed: %v", err)
	}
	if len(strings.TrimRight(string(out), "\r\n")) == 0 {
		return errors.New("printed nothing")
	}
	return nil
}

func checkStateDir(l *Checklist, dir string) {
	if err := state.MakeDir(dir); err != nil {
		l.fail("", "state dir", err.Error(), "create it, owned by the user that runs cht-backup, or choose --state-dir")
		return
	}
	f, err := os.CreateTemp(dir, ".preflight-*")
	if err != nil {
		l.fail("", "state dir", fmt.Sprintf("%s is not writable: %v", dir, errors.Unwrap(err)), "make it writable for the user that runs cht-backup, or choose --state-dir")
		return
	}
	f.Close()
	os.Remove(f.Name())
	l.ok("", "state dir", dir+" writable")
}

func checkLocalRepository(l *Checklist, o *options, repo borg.Repository) {
	name := repo.Raw
	st, err := os.Stat(repo.Path)
	switch {
	case err == nil && !st.IsDir():
		l.fail(name, "path", repo.Path+" exists and is not a directory", "choose another --repo path")
		return
	case err == nil:
		if _, err := os.Stat(filepath.Join(repo.Path, "config")); err == nil {
			l.ok(name, "path", "local borg repository at "+repo.Path)
		} else if entries, _ := os.ReadDir(repo.Path); len(entries) > 0 {
			l.fail(name, "path", repo.Path+" is a non-empty directory that is not a borg repository", "choose an empty or new directory for the repository")
			return
		} else {
			l.ok(name, "path", repo.Path+" is an empty directory (run `cht-backup init`)")
		}
	case os.IsNotExist(err):
		parent := nearestExisting(repo.Path)
		if unix := syscallAccessW(parent); unix != nil {
			l.fail(name, "path", fmt.Sprintf("%s does not exist and %s is not writable", repo.Path, parent), "create the directory or mount the medium first")
			return
		}
		l.ok(name, "path", repo.Path+" does not exist yet; `cht-backup init` will create it")
	default:
		l.fail(name, "path", fmt.Sprintf("cannot reach %s: %v", repo.Path, errors.Unwrap(err)), "check that the medium is mounted and readable")
		return
	}
	var fs syscall.Statfs_t
	existing := nearestExisting(repo.Path)
	if err := syscall.Statfs(existing, &fs); err == nil {
		free := fs.Bavail * uint64(fs.Bsize)
		if free < minFreeBytes {
			l.warn(name, "free space", sources.HumanBytes(int64(free))+" free", "make room on the medium before the first backup")
		} else {
			l.ok(name, "free space", sources.HumanBytes(int64(free))+" free")
		}
	}
	// A copy on the same disk as the data protects against mistakes, not against a dead disk.
	if same, err := sameDevice(existing, o.ChtDir); err == nil && same {
		l.warn(name, "medium", "the repository is on the same filesystem as "+o.ChtDir, "use another disk or a remote server for a real second copy (3-2-1)")
	}
}

func checkRemoteRepository(c *cli.Context, l *Checklist, o *options, repo borg.Repository) {
	name := repo.Raw
	client, target, err := o.dialRepository(c.Context, repo)
	if err != nil {
		l.failErr(name, "ssh", err, "")
		return
	}
	defer client.Close()
	client.RemoteBorg = os.Getenv("BORG_REMOTE_PATH") // borg itself starts this one on the server
	l.ok(name, "host key", fmt.Sprintf("%s matches %s", client.HostKeyFingerprint(), o.KnownHosts))
	l.ok(name, "login", "logged in as "+target.User)

	p := client.Probe(c.Context, repo.Path)
	if p.ForcedErr == nil {
		learntServerKey(o, serverLogin(o, target), p.Forced)
	}
	if p.Forced {
		l.info(name, "forced key", "the server forces this key to `borg serve` (hardened, good): whoami, date, hostname and df cannot run there, so borg's version is asked through borg itself")
	}
	if p.BorgVersionErr != nil {
		l.failErr(name, "remote borg", p.BorgVersionErr, "install borgbackup 1.2 or 1.4 on the backup server")
	} else if v, err := borg.ParseVersion(p.BorgVersion); err != nil {
		l.fail(name, "remote borg", err.Error(), "install borgbackup 1.2 or 1.4 on the backup server")
	} else if err := borg.CheckSupported(v); err != nil {
		l.fail(name, "remote borg", err.Error(), "install borgbackup 1.2 or 1.4 on the backup server")
	} else {
		l.ok(name, "remote borg", "borg "+p.BorgVersion)
	}
	if p.Forced {
		return
	}
	if p.WhoamiErr != nil {
		l.failErr(name, "whoami", p.WhoamiErr, "")
	} else {
		l.ok(name, "whoami", p.Whoami)
	}
	if p.DateErr != nil {
		l.failErr(name, "date", p.DateErr, "")
	} else if skew := p.ClockSkew; skew > maxClockSkew || skew < -maxClockSkew {
		l.warn(name, "date", fmt.Sprintf("server clock is %s off from this host's", skew.Round(time.Second)), "run NTP (systemd-timesyncd or chrony) on both hosts")
	} else {
		l.ok(name, "date", fmt.Sprintf("clock skew %s", skew.Round(time.Millisecond)))
	}
	if p.HostnameErr != nil {
		l.failErr(name, "hostname", p.HostnameErr, "")
	} else {
		l.ok(name, "hostname", p.Hostname)
	}
	if p.FreeErr != nil {
		l.failErr(name, "free space", p.FreeErr, "")
	} else if p.FreeBytes < minFreeBytes {
		l.warn(name, "free space", sources.HumanBytes(int64(p.FreeBytes))+" free on the repository filesystem", "make room on the backup server before the first backup")
	} else {
		l.ok(name, "free space", sources.HumanBytes(int64(p.FreeBytes))+" free on the repository filesystem")
	}
}

// dialRepository opens the SSH connection to a remote repository's server the way borg will
// reach it: same user (ssh's default: the local user), key and known_hosts.
func (o *options) dialRepository(ctx context.Context, repo borg.Repository) (*ssh.Client, ssh.Target, error) {
	t := ssh.Target{User: repo.User, Host: repo.Host, Port: repo.Port}
	if t.User == "" {
		if u, err := user.Current(); err == nil {
			t.User = u.Username
		}
	}
	c, err := ssh.Dial(ctx, ssh.BorgConfig(o.SSHKey, o.KnownHosts), t)
	return c, t, err
}

func nearestExisting(p string) string {
	for {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}

func syscallAccessW(p string) error { return syscall.Access(p, 2) }

func sameDevice(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return sa.Sys().(*syscall.Stat_t).Dev == sb.Sys().(*syscall.Stat_t).Dev, nil
}
