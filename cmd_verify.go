package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cht-backup/cht-backup/restore"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "the restore drill: extract an archive (default latest) into scratch space and compare it with its manifest",
		ArgsUsage: "[ARCHIVE]",
		Description: "For each repository (or the one given with --repo), extracts the whole archive into\n" +
			"<state-dir>/verify/ (mode 0700, removed afterwards, also when interrupted) and compares it with the\n" +
			"manifest written at backup time: the sha256 of every small file (.env, compose, TLS, credentials), and\n" +
			"per group the number of files and directories and their bytes, as md5sum, ls -R and du would. CouchDB\n" +
			"groups may hold more than the manifest counted (CouchDB writes while the backup runs); less is a\n" +
			"failure. A damaged archive makes the extraction fail, with the reason. Exit 0: every archive passed;\n" +
			"2: at least one failed.",
		Flags: []cli.Flag{jsonFlag, couchdbFlag},
		Action: withOptions(func(c *cli.Context) error { return maxArgs(c, 1, "one archive name") }, func(c *cli.Context, o *options) error {
			archive := c.Args().First()
			if archive == "" {
				archive = "latest"
			}
			mode, err := restore.ParseDrillMode(c.String("couchdb"))
			if err != nil {
				return usageErrorf("%v", err)
			}
			return runJob(c.Context, o, state.JobVerify, func(ctx context.Context) ([]state.Outcome, error) {
				drill, closeDocker := drillOptions(ctx, o, mode)
				defer closeDocker()
				results, err := runVerify(ctx, o, archive, drill, os.Stdout)
				return verifyOutcomes(results), err
			})
		}),
	}
}

// runVerify drills archive in every configured repository and returns the results, one per
// repository, for printing and recording.
func runVerify(ctx context.Context, o *options, archive string, drill restore.DrillOptions, out io.Writer) ([]restore.VerifyResult, error) {
	if err := o.requireRepos(); err != nil {
		return nil, err
	}
	r, err := o.runner(ctx, true)
	if err != nil {
		return nil, err
	}
	results := []restore.VerifyResult{}
	for _, repo := range o.Repos {
		if ctx.Err() != nil {
			results = append(results, restore.VerifyResult{Repository: repo.Raw, Archive: archive, Reason: "not started: the run was interrupted", Err: ctx.Err()})
			continue
		}
		name, count, err := resolveArchive(ctx, r, repo, archive)
		if err != nil {
			results = append(results, restore.VerifyResult{Repository: repo.Raw, Archive: archive, Reason: oneLine(err.Error()), Err: err, Started: time.Now().UTC()})
			continue
		}
		prog := newProgressLine(o, repo.Raw, extractProgress)
		res := restore.Verify(ctx, restore.VerifyOptions{
			Source:   restore.Source{Runner: r, Repo: repo, Archive: name, OnProgress: prog.update},
			StateDir: o.StateDir,
			CouchDB:  drill,
			Log:      o.Log,
		})
		prog.done()
		res.ArchiveCount = count
		results = append(results, res)
	}
	if o.JSON {
		if err := writeJSON(out, results); err != nil {
			return results, err
		}
	} else {
		printVerifyResults(out, results)
	}
	failed := 0
	var first *restore.VerifyResult
	for i := range results {
		if !results[i].OK {
			failed++
			if first == nil {
				first = &results[i]
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return results, &userError{err: errors.New("verify interrupted; the scratch copy was removed"), hint: "run it again", code: exitInterrupted}
	case failed > 0:
		hint := "run `cht-backup check` on that repository, keep it untouched until the cause is known, and make a fresh backup"
		if first.Err != nil {
			if h := hintOf(first.Err); h != "" {
				hint = h
			}
		}
		return results, &userError{err: fmt.Errorf("verify failed for %d of %d repositories: %s", failed, len(results), first.Reason), hint: hint}
	}
	return results, nil
}

func printVerifyResults(w io.Writer, results []restore.VerifyResult) {
	for _, res := range results {
		fmt.Fprintf(w, "verify %s::%s\n", res.Repository, res.Archive)
		printGroupChecks(w, res.Groups)
		printCouchDBDrill(w, res.CouchDB)
		took := time.Duration(res.DurationSeconds * float64(time.Second)).Round(time.Second)
		if res.OK {
			fmt.Fprintf(w, "  verdict: OK, the archive restores: %d files (%s) match what was backed up; took %s; the scratch copy is removed\n",
				res.Files, sources.HumanBytes(res.Bytes), took)
		} else {
			fmt.Fprintf(w, "  verdict: FAILED: %s\n", res.Reason)
		}
	}
}

// verifyOutcomes turns drill results into state records.
func verifyOutcomes(results []restore.VerifyResult) []state.Outcome {
	var outs []state.Outcome
	for _, r := range results {
		oc := state.Outcome{Repository: r.Repository, Archive: r.Archive, Files: r.Files, Start: r.Started, End: r.Started.Add(r.Duration),
			CouchDB: drillState(r.CouchDB), Archives: r.ArchiveCount}
		if !r.OK {
			oc.Error = oneLine(r.Reason)
			if oc.Error == "" && r.Err != nil {
				oc.Error = oneLine(r.Err.Error())
			}
		}
		outs = append(outs, oc)
	}
	return outs
}

var couchdbFlag = &cli.StringFlag{Name: "couchdb", Value: restore.DrillAuto,
	Usage: "start CouchDB (the host's own image, isolated) on the restored copy and check every database against the live figures of backup time: " +
		"`auto` when Docker and the image are there, always (fail when it cannot), never"}

// drillOptions connects to Docker for the CouchDB drill unless it is off; without Docker the
// drill says why it could not run.
func drillOptions(ctx context.Context, o *options, mode string) (restore.DrillOptions, func()) {
	d := restore.DrillOptions{Mode: mode, Log: o.Log}
	if mode == restore.DrillNever {
		return d, func() {}
	}
	cli, err := sources.NewDockerClient(ctx)
	if err != nil {
		d.DockerErr = err
		return d, func() {}
	}
	d.Docker = cli
	return d, func() { cli.Close() }
}

// printCouchDBDrill says what CouchDB said of the restored copy, per database.
func printCouchDBDrill(w io.Writer, d *restore.CouchDBDrill) {
	if d == nil {
		return
	}
	switch d.Status {
	case restore.DrillNotRun:
		fmt.Fprintf(w, "  couchdb drill: NOT RUN: %s\n", d.Reason)
		return
	case restore.DrillPassed:
		fmt.Fprintf(w, "  couchdb drill: passed: CouchDB %s (image %s) opened the restored copy\n", d.Version, d.Image)
	default:
		fmt.Fprintf(w, "  couchdb drill: FAILED: %s\n", d.Reason)
	}
	fmt.Fprintf(w, "    compared with: %s\n", d.Reference)
	for _, db := range d.Databases {
		mark := "ok     "
		if !db.OK {
			mark = "FAILED "
		}
		line := ""
		if r := db.Restored; r != nil {
			line = fmt.Sprintf("%d docs + %d deleted, seq %d", r.DocCount, r.DocDelCount, r.UpdateSeq)
			if rec := db.Recorded; rec != nil {
				line += fmt.Sprintf(" (live at backup: %d + %d, seq %d)", rec.DocCount, rec.DocDelCount, rec.UpdateSeq)
			}
		}
		for _, s := range []string{db.Problem, db.Note} {
			if s != "" {
				if line != "" {
					line += "; "
				}
				line += s
			}
		}
		fmt.Fprintf(w, "    %s %-20s %s\n", mark, db.Name, line)
	}
}

// drillState is the drill as state.json and the metrics record it.
func drillState(d *restore.CouchDBDrill) *state.CouchDBDrill {
	if d == nil {
		return nil
	}
	s := &state.CouchDBDrill{Status: d.Status, Reason: oneLine(d.Reason), Image: d.Image, Version: d.Version, Reference: d.Reference}
	for _, db := range d.Databases {
		sd := state.CouchDBDatabase{Name: db.Name, OK: db.OK, Problem: db.Problem}
		if r := db.Restored; r != nil {
			sd.DocCount, sd.DocDelCount, sd.UpdateSeq = r.DocCount, r.DocDelCount, r.UpdateSeq
		}
		s.Databases = append(s.Databases, sd)
	}
	return s
}
