package borg

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Retention is a prune policy. A zero count leaves that rule out; -1 keeps one per period
// without limit (borg's own meaning, e.g. --keep-monthly=-1 keeps every month for ever).
type Retention struct {
	Within  string // borg interval: 10d, 4w, 6m, 1y, 12H; empty leaves it out
	Daily   int
	Weekly  int
	Monthly int
}

// DefaultRetention is the CHT docs' policy: everything of the last 10 days, one archive for each
// of the last 4 weeks, and one for every month for ever.
var DefaultRetention = Retention{Within: "10d", Weekly: 4, Monthly: -1}

var withinRE = regexp.MustCompile(`^[1-9][0-9]*[HdwmyS]$`)

// Validate says what is wrong with a policy, in words a user can act on.
func (p Retention) Validate() error {
	if p.Within != "" && !withinRE.MatchString(p.Within) {
		return fmt.Errorf("--keep-within %q is not an interval borg knows: give a number and a unit, H (hours), d, w, m (months) or y, e.g. 10d", p.Within)
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"keep-daily", p.Daily}, {"keep-weekly", p.Weekly}, {"keep-monthly", p.Monthly}} {
		if c.n < -1 {
			return fmt.Errorf("--%s %d: give a count, 0 to leave the rule out, or -1 for no limit", c.name, c.n)
		}
	}
	if p.Within == "" && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 {
		return fmt.Errorf("the retention policy keeps nothing: set at least one of --keep-within, --keep-daily, --keep-weekly, --keep-monthly")
	}
	return nil
}

// String is the policy as borg flags, for logs and reports.
func (p Retention) String() string { return strings.Join(p.flags(), " ") }

func (p Retention) flags() []string {
	var f []string
	if p.Within != "" {
		f = append(f, "--keep-within="+p.Within)
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}} {
		if c.n != 0 {
			f = append(f, "--keep-"+c.name+"="+strconv.Itoa(c.n))
		}
	}
	return f
}

// PruneArgs builds `borg prune --list` with the policy. borg itself never deletes a .checkpoint
// archive that no later complete archive supersedes, and applies the rules to complete archives
// only. glob limits the prune to archives whose names match (this host's), "" means all.
func PruneArgs(repo Repository, p Retention, glob string, dryRun bool) []string {
	args := []string{"prune", "--log-json", "--list"}
	if dryRun {
		args = append(args, "--dry-run")
	}
	if glob != "" {
		args = append(args, "--glob-archives", glob)
	}
	args = append(args, p.flags()...)
	return append(args, repo.Raw)
}

// CompactArgs builds `borg compact`: frees the space of deleted archives. It needs a repository
// opened without append-only mode, which is why it runs on the backup server with its own key.
func CompactArgs(repo Repository) []string {
	return []string{"compact", "--log-json", repo.Raw}
}

// PruneDecision is what prune did, or would do, with one archive.
type PruneDecision struct {
	Archive string `json:"archive"`
	Time    string `json:"time,omitempty"` // as borg printed it
	Keep    bool   `json:"keep"`
	Rule    string `json:"rule,omitempty"` // why it is kept: "within #1", "weekly #2", "checkpoint"
}

var pruneLineRE = regexp.MustCompile(`^(Would prune|Pruning archive \(\d+/\d+\)|Keeping archive \(rule: ([^)]*)\)|Keeping checkpoint archive):\s+(\S+)\s+(.*?)\s*(\[[0-9a-f]+\])?$`)

// ParsePruneLine reads one line of `borg prune --list` (a borg.output.list log message).
func ParsePruneLine(msg string) (PruneDecision, bool) {
	m := pruneLineRE.FindStringSubmatch(strings.TrimSpace(msg))
	if m == nil {
		return PruneDecision{}, false
	}
	d := PruneDecision{Archive: m[3], Time: strings.TrimSpace(m[4])}
	switch {
	case strings.HasPrefix(m[1], "Keeping checkpoint"):
		d.Keep, d.Rule = true, "checkpoint"
	case strings.HasPrefix(m[1], "Keeping archive"):
		d.Keep, d.Rule = true, m[2]
	}
	return d, true
}
