package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "run borg check on each repository: repository and archive consistency, data on request",
		Description: "Checks each repository's segments and index and every archive's metadata. With --verify-data borg\n" +
			"also reads and authenticates every chunk (slow: it reads the whole repository from the server).",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "verify-data", Usage: "also read and authenticate every data chunk"},
			&cli.IntFlag{Name: "last", Usage: "check only the last `N` archives (the repository itself is always checked)"},
		},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			return runJob(c.Context, o, state.JobCheck, func(ctx context.Context) ([]state.Outcome, error) {
				return runCheck(ctx, o, borg.CheckOptions{VerifyData: c.Bool("verify-data"), Last: c.Int("last")}, os.Stdout)
			})
		}),
	}
}

// CheckResult is one repository's check.
type CheckResult struct {
	Repository      string   `json:"repository"`
	OK              bool     `json:"ok"`
	VerifyData      bool     `json:"verify_data"`
	DurationSeconds float64  `json:"duration_seconds"`
	Problems        []string `json:"problems,omitempty"`
	Error           string   `json:"error,omitempty"`
	Hint            string   `json:"hint,omitempty"`

	err error // the borg error, for retries of connection failures
}

// runCheck checks every repository and returns one outcome each for the state file.
func runCheck(ctx context.Context, o *options, co borg.CheckOptions, out io.Writer) ([]state.Outcome, error) {
	if err := o.requireRepos(); err != nil {
		return nil, err
	}
	r, err := o.runner(ctx, true)
	if err != nil {
		return nil, err
	}
	var results []CheckResult
	var outcomes []state.Outcome
	failed := 0
	for _, repo := range o.Repos {
		start := time.Now()
		var res CheckResult
		_ = withRetry(ctx, o, "borg check of "+repo.Raw, func(ctx context.Context) error {
			res = checkRepository(ctx, o, r, repo, co)
			return res.err
		})
		oc := state.Outcome{Repository: repo.Raw, Start: start, End: time.Now(), Error: res.Error, Hint: res.Hint}
		if res.OK {
			oc.Archives = archiveCount(ctx, r, repo)
		} else {
			failed++
		}
		outcomes = append(outcomes, oc)
		results = append(results, res)
	}
	if o.JSON {
		if err := writeJSON(out, results); err != nil {
			return outcomes, err
		}
	} else {
		for _, res := range results {
			if res.OK {
				what := "repository and archives consistent"
				if res.VerifyData {
					what += ", every data chunk read and authenticated"
				}
				fmt.Fprintf(out, "ok      %s: %s (%s)\n", res.Repository, what, time.Duration(res.DurationSeconds*float64(time.Second)).Round(time.Second))
				continue
			}
			fmt.Fprintf(out, "FAILED  %s: %s\n", res.Repository, res.Error)
			for _, p := range res.Problems {
				fmt.Fprintf(out, "        %s\n", p)
			}
			if res.Hint != "" {
				fmt.Fprintf(out, "        what to do: %s\n", res.Hint)
			}
		}
	}
	if ctx.Err() != nil {
		return outcomes, &userError{err: fmt.Errorf("check interrupted"), hint: "run it again", code: exitInterrupted}
	}
	if failed > 0 {
		return outcomes, &userError{err: fmt.Errorf("check failed for %d of %d repositories", failed, len(o.Repos)),
			hint: firstCheckHint(results), quiet: o.JSON}
	}
	return outcomes, nil
}

// checkRepository runs borg check. borg exits 1 when it found damage: for check that is a failure,
// not a warning.
func checkRepository(ctx context.Context, o *options, r *borg.Runner, repo borg.Repository, co borg.CheckOptions) CheckResult {
	res := CheckResult{Repository: repo.Raw, VerifyData: co.VerifyData}
	prog := newProgressLine(o, repo.Raw, checkProgress)
	out, err := r.Run(ctx, borg.Call{Args: borg.CheckArgs(repo, co), OnProgress: prog.update})
	prog.done()
	if out != nil {
		res.DurationSeconds = out.Duration.Seconds()
		for _, m := range out.Errors {
			if strings.Contains(m.Message, "Traceback (most recent call last)") {
				continue // borg's traceback is for -v, not the report
			}
			res.Problems = append(res.Problems, firstLine(m.Message))
		}
	}
	switch {
	case err != nil:
		res.Error, res.Hint, res.err = oneLine(err.Error()), hintOf(err), err
		// borg's own error line is already the error: say it once.
		var kept []string
		for _, p := range res.Problems {
			if !strings.Contains(res.Error, p) {
				kept = append(kept, p)
			}
		}
		res.Problems = kept
	case out.Warned:
		res.Error = "borg check found damage"
		if len(res.Problems) > 0 {
			res.Error += ": " + res.Problems[0]
		}
		res.Hint = "keep the repository as it is; make a fresh backup to another repository, and read borg's docs on `borg check --repair` before repairing"
	default:
		res.OK = true
	}
	return res
}

func firstCheckHint(rs []CheckResult) string {
	for _, r := range rs {
		if r.Hint != "" {
			return r.Hint
		}
	}
	return ""
}
