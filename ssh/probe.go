package ssh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CheckTimeout bounds each remote check of Probe when ctx has no earlier
// deadline.
const CheckTimeout = 30 * time.Second

// Probe is what the pre-flight learned about the server. Each field has its
// own error, so one failing check does not hide the others. On a forced key
// only the borg version is checked and the other errors are ErrForcedCommand.
type Probe struct {
	Forced    bool  // the key is forced to a command (borg serve)
	ForcedErr error // asking that failed, so Forced says nothing

	BorgVersion    string // "1.2.4"
	BorgVersionErr error

	Whoami    string
	WhoamiErr error

	Hostname    string
	HostnameErr error

	RemoteTime time.Time
	ClockSkew  time.Duration // remote minus local
	DateErr    error

	FreeBytes uint64 // free space for the repository, for an unprivileged user
	FreeErr   error
}

// Probe runs the pre-flight checks. repoPath is the path part of the borg
// repository URL; the free space is that of the filesystem holding it, or
// holding its nearest existing parent when the repository is not created yet.
func (c *Client) Probe(ctx context.Context, repoPath string) Probe {
	var p Probe
	forced, err := withTimeout(ctx, func(ctx context.Context) (bool, error) { return c.Forced(ctx) })
	if err != nil {
		err = fmt.Errorf("cannot run commands over SSH: %w", err)
		p.ForcedErr = err
		p.BorgVersionErr, p.WhoamiErr, p.HostnameErr, p.DateErr, p.FreeErr = err, err, err, err, err
		return p
	}
	p.Forced = forced
	if forced {
		p.BorgVersion, p.BorgVersionErr = withTimeout(ctx, c.BorgServeVersion)
		p.WhoamiErr, p.HostnameErr, p.DateErr, p.FreeErr = ErrForcedCommand, ErrForcedCommand, ErrForcedCommand, ErrForcedCommand
		return p
	}

	if out, err := c.runChecked(ctx, c.remoteBorg()+" --version"); err != nil {
		p.BorgVersionErr = err
	} else {
		p.BorgVersion, p.BorgVersionErr = parseBorgVersion(out)
	}

	if out, err := c.runChecked(ctx, "whoami"); err != nil {
		p.WhoamiErr = err
	} else if p.Whoami = lastLine(out); p.Whoami == "" {
		p.WhoamiErr = errors.New("whoami printed nothing")
	}

	// hostname(1) is missing on some minimal systems; uname -n is POSIX.
	if out, err := c.runChecked(ctx, "hostname 2>/dev/null || uname -n"); err != nil {
		p.HostnameErr = err
	} else if p.Hostname = lastLine(out); p.Hostname == "" {
		p.HostnameErr = errors.New("hostname printed nothing")
	}

	// %N gives sub-second precision on GNU date; elsewhere the parser falls
	// back to whole seconds.
	start := time.Now()
	out, err := c.runChecked(ctx, "date -u +%s.%N")
	end := time.Now()
	if err != nil {
		p.DateErr = err
	} else if p.RemoteTime, p.DateErr = parseEpoch(out); p.DateErr == nil {
		local := start.Add(end.Sub(start) / 2)
		p.ClockSkew = p.RemoteTime.Sub(local)
	}

	if script, err := dfScript(repoPath); err != nil {
		p.FreeErr = err
	} else if out, err := c.runChecked(ctx, script); err != nil {
		p.FreeErr = err
	} else {
		p.FreeBytes, p.FreeErr = parseDF(out)
	}
	return p
}

func (c *Client) runChecked(ctx context.Context, cmd string) (string, error) {
	return withTimeout(ctx, func(ctx context.Context) (string, error) { return c.Run(ctx, cmd) })
}

func withTimeout[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	return f(ctx)
}

var borgVersionLine = regexp.MustCompile(`^borg\S*\s+(\d+\.\d+\.\d+\S*)$`)

// parseBorgVersion reads `borg --version` output ("borg 1.2.4"), skipping
// anything a login script may have printed first.
func parseBorgVersion(out string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := borgVersionLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("unexpected output of borg --version: %q", oneLine(out, 100))
}

// parseEpoch reads `date -u +%s.%N` output: seconds, optionally followed by a
// fraction. A date without %N support prints "%N" or "N"; that part is ignored.
func parseEpoch(out string) (time.Time, error) {
	s := lastLine(out)
	secPart, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secPart, 10, 64)
	if err != nil || secPart == "" || secPart[0] == '+' {
		return time.Time{}, fmt.Errorf("unexpected output of date -u +%%s: %q", oneLine(out, 100))
	}
	var nsec int64
	if frac != "" && strings.Trim(frac, "0123456789") == "" {
		frac = (frac + "000000000")[:9]
		nsec, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(sec, nsec).UTC(), nil
}

// parseDF reads `df -Pk` output and returns the available bytes of its one
// filesystem. The filesystem name and the mount point may contain blanks,
// so the numbers are found as the run of three integers before "NN%".
func parseDF(out string) (uint64, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 1; i-- {
		f := strings.Fields(lines[i])
		for j := 1; j+3 < len(f); j++ {
			if !isUint(f[j]) || !isUint(f[j+1]) || !isUint(f[j+2]) || !isPercent(f[j+3]) {
				continue
			}
			kb, _ := strconv.ParseUint(f[j+2], 10, 64)
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("unexpected output of df -Pk: %q", oneLine(out, 160))
}

func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func isPercent(s string) bool {
	if s == "-" { // pseudo filesystems
		return true
	}
	n, ok := strings.CutSuffix(s, "%")
	return ok && isUint(n)
}

var tildeUser = regexp.MustCompile(`^~[a-z_][a-z0-9_.-]*$`)

// dfScript builds the shell command measuring free space for a borg
// repository path. It follows borg serve's path rules: "/./x" and plain "x"
// are relative to the login directory (home), "/~/x" and "~/x" to the home
// directory, "/~user/x" and "~user/x" to that user's home. The loop climbs to
// the nearest existing parent, as the repository may not exist yet.
func dfScript(repoPath string) (string, error) {
	p := repoPath
	switch {
	case strings.HasPrefix(p, "/./"):
		p = p[3:]
	case strings.HasPrefix(p, "/~"):
		p = p[1:]
	}
	var expr string
	switch {
	case p == "" || p == "/.":
		expr = "."
	case p == "~" || strings.HasPrefix(p, "~/"):
		expr = `"$HOME"` + shellQuote(p[1:])
	case strings.HasPrefix(p, "~"):
		name, rest, _ := strings.Cut(p, "/")
		if !tildeUser.MatchString(name) {
			return "", fmt.Errorf("repository path %q starts with an unusual user name", repoPath)
		}
		// Unquoted so the shell expands ~user; the name was checked above.
		expr = name
		if rest != "" {
			expr += shellQuote("/" + rest)
		}
	default:
		expr = shellQuote(p)
	}
	return `p=` + expr + `; n=0; while [ ! -e "$p" ] && [ $n -lt 64 ]; do p=$(dirname -- "$p"); n=$((n+1)); done; df -Pk -- "$p"`, nil
}

// shellQuote quotes s for a POSIX shell; "" stays "" so it can be appended.
func shellQuote(s string) string {
	if s == "" {
		return ""
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func containsLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

// FreeSpace measures the free space of the file system holding repoPath, as Probe does, for a
// key that may run commands; on a forced key it returns ErrForcedCommand.
func (c *Client) FreeSpace(ctx context.Context, repoPath string) (uint64, error) {
	forced, err := withTimeout(ctx, func(ctx context.Context) (bool, error) { return c.Forced(ctx) })
	if err != nil {
		return 0, err
	}
	if forced {
		return 0, ErrForcedCommand
	}
	script, err := dfScript(repoPath)
	if err != nil {
		return 0, err
	}
	out, err := c.runChecked(ctx, script)
	if err != nil {
		return 0, err
	}
	return parseDF(out)
}
