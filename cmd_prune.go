package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func pruneCommand() *cli.Command {
	d := borg.DefaultRetention
	return &cli.Command{
		Name:  "prune",
		Usage: "apply the retention policy: mark old archives deleted (the backup server frees the space)",
		Description: "Keeps what the policy asks for (default, as the CHT docs: --keep-within=10d --keep-weekly=4\n" +
			"--keep-monthly=-1) and marks every other archive of this host deleted. A .checkpoint archive left by an\n" +
			"interrupted backup is kept until a later complete archive supersedes it. Through the append-only key\n" +
			"nothing is freed: the space comes back when the backup server compacts the repository\n" +
			"(`cht-backup schedule print --server` sets that up).",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would be pruned; change nothing"},
			&cli.StringFlag{Name: "keep-within", Value: d.Within, EnvVars: []string{envName("keep-within")}, Usage: "keep every archive younger than `INTERVAL` (e.g. 10d, 4w, 6m); empty leaves the rule out"},
			&cli.IntFlag{Name: "keep-daily", Value: d.Daily, EnvVars: []string{envName("keep-daily")}, Usage: "keep the last archive of each of the last `N` days (0: rule not used, -1: no limit)"},
			&cli.IntFlag{Name: "keep-weekly", Value: d.Weekly, EnvVars: []string{envName("keep-weekly")}, Usage: "keep the last archive of each of the last `N` weeks (0: rule not used, -1: no limit)"},
			&cli.IntFlag{Name: "keep-monthly", Value: d.Monthly, EnvVars: []string{envName("keep-monthly")}, Usage: "keep the last archive of each of the last `N` months (-1: every month, for ever)"},
			&cli.StringFlag{Name: "glob-archives", EnvVars: []string{envName("glob-archives")}, Usage: "prune only archives whose names match `GLOB` (default: this host's, HOSTNAME-*)"},
		},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			po := pruneOptions{
				Policy: borg.Retention{Within: c.String("keep-within"), Daily: c.Int("keep-daily"), Weekly: c.Int("keep-weekly"), Monthly: c.Int("keep-monthly")},
				DryRun: c.Bool("dry-run"),
				Glob:   c.String("glob-archives"),
			}
			if err := po.Policy.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			if po.Glob == "" {
				host, _ := os.Hostname()
				po.Glob = host + "-*"
			}
			if po.DryRun {
				return withHostLock(c.Context, o, state.JobPrune, func(ctx context.Context) error {
					_, err := runPrune(ctx, o, po, os.Stdout)
					return err
				})
			}
			return runJob(c.Context, o, state.JobPrune, func(ctx context.Context) ([]state.Outcome, error) {
				return runPrune(ctx, o, po, os.Stdout)
			})
		}),
	}
}

type pruneOptions struct {
	Policy borg.Retention
	DryRun bool
	Glob   string
}

// PruneResult is one repository's prune.
type PruneResult struct {
	Repository string               `json:"repository"`
	OK         bool                 `json:"ok"`
	DryRun     bool                 `json:"dry_run"`
	Policy     string               `json:"policy"`
	Glob       string               `json:"glob_archives"`
	Pruned     []string             `json:"pruned"` // marked deleted (or, in a dry run, would be)
	Kept       []borg.PruneDecision `json:"kept"`
	Archives   int                  `json:"archives_left,omitempty"` // complete archives left
	SpaceNote  string               `json:"space_note,omitempty"`    // how the space comes back
	Error      string               `json:"error,omitempty"`
	Hint       string               `json:"hint,omitempty"`
}

func runPrune(ctx context.Context, o *options, po pruneOptions, out io.Writer) ([]state.Outcome, error) {
	if err := o.requireRepos(); err != nil {
		return nil, err
	}
	r, err := o.runner(ctx, true)
	if err != nil {
		return nil, err
	}
	var results []PruneResult
	var outcomes []state.Outcome
	failed := 0
	for _, repo := range o.Repos {
		res := PruneResult{Repository: repo.Raw, DryRun: po.DryRun, Policy: po.Policy.String(), Glob: po.Glob, Pruned: []string{}, Kept: []borg.PruneDecision{}}
		var decisions []borg.PruneDecision
		err := withRetry(ctx, o, "borg prune of "+repo.Raw, func(ctx context.Context) error {
			decisions = nil
			_, err := r.Run(ctx, borg.Call{Args: borg.PruneArgs(repo, po.Policy, po.Glob, po.DryRun), OnLog: func(m borg.LogMessage) {
				if d, ok := borg.ParsePruneLine(m.Message); ok && m.Name == "borg.output.list" {
					decisions = append(decisions, d)
				}
			}})
			return err
		})
		for _, d := range decisions {
			if d.Keep {
				res.Kept = append(res.Kept, d)
			} else {
				res.Pruned = append(res.Pruned, d.Archive)
			}
		}
		oc := state.Outcome{Repository: repo.Raw}
		if err != nil {
			res.Error, res.Hint = oneLine(err.Error()), hintOf(err)
			oc.Error, oc.Hint = res.Error, res.Hint
			failed++
		} else {
			res.OK = true
			res.SpaceNote = spaceNote(repo)
			if !po.DryRun {
				res.Archives = archiveCount(ctx, r, repo)
				oc.Archives = res.Archives
			}
		}
		results = append(results, res)
		outcomes = append(outcomes, oc)
	}
	if o.JSON {
		if err := writeJSON(out, results); err != nil {
			return outcomes, err
		}
	} else {
		printPrune(out, results)
	}
	if ctx.Err() != nil {
		return outcomes, &userError{err: fmt.Errorf("prune interrupted"), hint: "run it again; borg left every repository consistent", code: exitInterrupted}
	}
	if failed > 0 {
		hint := ""
		for _, res := range results {
			if hint == "" {
				hint = res.Hint
			}
		}
		return outcomes, &userError{err: fmt.Errorf("prune failed for %d of %d repositories", failed, len(o.Repos)), hint: hint, quiet: o.JSON}
	}
	return outcomes, nil
}

// spaceNote says plainly when the space of pruned archives comes back, and how.
func spaceNote(repo borg.Repository) string {
	if repo.Local() {
		return fmt.Sprintf("the pruned archives' space comes back only when the repository is compacted: "+
			"`borg config %[1]s append_only 0 && borg compact %[1]s; borg config %[1]s append_only 1`",
			borg.ShellQuote(repo.Path))
	}
	return fmt.Sprintf("this host's key is append-only: the archives are only marked deleted and no space is freed "+
		"until the backup server %s compacts the repository with its own key "+
		"(the cht-backup-compact timer that `cht-backup schedule print --server` sets up, or `borg compact` there by hand)", repo.Host)
}

func printPrune(w io.Writer, results []PruneResult) {
	for _, res := range results {
		if !res.OK {
			fmt.Fprintf(w, "FAILED  %s: %s\n", res.Repository, res.Error)
			if res.Hint != "" {
				fmt.Fprintf(w, "        what to do: %s\n", res.Hint)
			}
			continue
		}
		verb, label := "marked deleted", "deleted"
		if res.DryRun {
			verb, label = "would be pruned", "would prune"
		}
		if len(res.Pruned)+len(res.Kept) == 0 {
			fmt.Fprintf(w, "ok      %s: no archive matches %s; nothing to prune (--glob-archives chooses others)\n", res.Repository, res.Glob)
			continue
		}
		fmt.Fprintf(w, "ok      %s (%s): %d %s %s, %d kept\n", res.Repository, res.Policy, len(res.Pruned), plural(len(res.Pruned), "archive", "archives"), verb, len(res.Kept))
		for _, a := range res.Pruned {
			fmt.Fprintf(w, "        %s %s\n", label, a)
		}
		for _, k := range res.Kept {
			fmt.Fprintf(w, "        keep %s (%s)\n", k.Archive, k.Rule)
		}
		if len(res.Pruned) > 0 {
			fmt.Fprintf(w, "        note: %s\n", res.SpaceNote)
		}
	}
}
