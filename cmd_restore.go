package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/restore"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore an archive into a directory (--target DIR) or onto this CHT host (--in-place)",
		ArgsUsage: "ARCHIVE",
		Description: "ARCHIVE is a name from `cht-backup archives`, or latest. With several repositories configured the\n" +
			"first is used; choose another with --repo.\n\n" +
			"--target DIR extracts into DIR: DIR/couchdb/ (the CouchDB data directory's contents, with its mode and\n" +
			"owner), DIR/upgrade-service/.env and the upgrade service's *.yml, DIR/compose/*.yml, DIR/tls/ (nginx's\n" +
			"/etc/nginx/private/), DIR/credentials/ (couchdb's /opt/couchdb/etc/local.d/) and DIR/manifest.json.\n" +
			"Owners and modes are kept when run as root. A non-empty DIR needs --force.\n\n" +
			"--in-place puts the archive back on this host: it shows the plan and asks (--yes skips the question),\n" +
			"extracts next to the CouchDB data while CHT still runs, stops the compose project's containers, moves\n" +
			"the current CouchDB directory, .env and compose files aside (<path>.before-restore-<UTC time>; nothing\n" +
			"is deleted), puts the archive's files in place, copies the TLS files and credentials back into the\n" +
			"nginx and couchdb containers, and starts the containers again. .env goes to <cht-dir>/upgrade-service/;\n" +
			"the CouchDB data and compose files go where the restored .env's COUCHDB_DATA and CHT_COMPOSE_PATH say.\n" +
			"If a step fails it stops there and prints the state of the host and the commands that go back.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "target", Usage: "extract into `DIR` in the layout above"},
			&cli.BoolFlag{Name: "in-place", Usage: "put the archive back on this CHT host (disaster recovery, or a fresh host with CHT installed)"},
			&cli.BoolFlag{Name: "force", Usage: "restore into a non-empty --target DIR; what the layout replaces is moved aside"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask before an in-place restore (for scripts)"},
			couchdbFlag,
			jsonFlag,
		},
		Action: withOptions(nil, func(c *cli.Context, o *options) error {
			if c.NArg() == 0 {
				return usageErrorf("restore needs the name of an archive (or latest): cht-backup restore ARCHIVE (--target DIR | --in-place)")
			}
			if c.NArg() > 1 {
				return usageErrorf("restore takes one archive name, got %q", c.Args().Slice())
			}
			ro := restoreOptions{Archive: c.Args().First(), Target: c.String("target"), InPlace: c.Bool("in-place"), Force: c.Bool("force"), Yes: c.Bool("yes")}
			switch {
			case ro.Target != "" && ro.InPlace:
				return usageErrorf("give either --target DIR or --in-place, not both")
			case ro.Target == "" && !ro.InPlace:
				return usageErrorf("say where to restore: --target DIR (into a directory) or --in-place (onto this CHT host)")
			case ro.Force && ro.InPlace:
				return usageErrorf("--force is for --target; an in-place restore always moves what it replaces aside")
			case c.IsSet("couchdb") && !ro.InPlace:
				return usageErrorf("--couchdb is for --in-place (and verify); boot a --target copy yourself, or run verify")
			}
			mode, err := restore.ParseDrillMode(c.String("couchdb"))
			if err != nil {
				return usageErrorf("%v", err)
			}
			ro.CouchDB = mode
			if ro.Target != "" {
				if live := restore.LiveClash(o.ChtDir, ro.Target); live != "" {
					return usageErrorf("--target %s would put the archive over this host's live %s (with --force it would move it aside from under the running CHT); restore onto this host with --in-place, or choose another directory", ro.Target, live)
				}
			}
			return runRestore(c.Context, o, ro, os.Stdin, os.Stdout)
		}),
	}
}

type restoreOptions struct {
	Archive string
	Target  string
	InPlace bool
	Force   bool
	Yes     bool
	CouchDB string // drill mode for --in-place
}

// runRestore finds the archive and, for --in-place, shows the plan and asks, all before it takes
// the host lock: only the part that changes this host runs as a job (locked, recorded, pinged), so
// a restore that was declined records nothing and a waiting question never holds up a backup.
func runRestore(ctx context.Context, o *options, ro restoreOptions, in *os.File, out io.Writer) error {
	if err := o.requireRepos(); err != nil {
		return err
	}
	repo := o.Repos[0]
	if len(o.Repos) > 1 {
		o.Log.Warnf("%d repositories are configured; restoring from the first, %s (choose another with --repo)", len(o.Repos), repo.Raw)
	}
	r, err := o.runner(ctx, true)
	if err != nil {
		return err
	}
	name, _, err := resolveArchive(ctx, r, repo, ro.Archive)
	if err != nil {
		return err
	}
	prog := newProgressLine(o, repo.Raw, extractProgress)
	src := restore.Source{Runner: r, Repo: repo, Archive: name, OnProgress: prog.update}
	asJob := func(body func(ctx context.Context, oc *state.Outcome) error) error {
		return runJob(ctx, o, state.JobRestore, func(ctx context.Context) ([]state.Outcome, error) {
			start := time.Now()
			oc := state.Outcome{Repository: repo.Raw, Archive: name, Start: start}
			err := body(ctx, &oc)
			oc.End = time.Now()
			if exitCode(err) == exitWarning {
				if len(oc.Warnings) == 0 {
					oc.Warnings = []string{oneLine(err.Error())}
				}
			} else if err != nil {
				oc.Error, oc.Hint = oneLine(err.Error()), hintOf(err)
			}
			return []state.Outcome{oc}, err
		})
	}
	if ro.Target != "" {
		return asJob(func(ctx context.Context, _ *state.Outcome) error { return restoreToTarget(ctx, o, src, ro, out, prog) })
	}
	return restoreInPlace(ctx, o, src, ro, in, out, prog, asJob)
}

func restoreToTarget(ctx context.Context, o *options, src restore.Source, ro restoreOptions, out io.Writer, prog *progressLine) error {
	res, err := restore.ToTarget(ctx, restore.TargetOptions{Source: src, Dir: ro.Target, Force: ro.Force, Log: o.Log})
	prog.done()
	if err != nil {
		if res != nil && len(res.Placed)+len(res.MovedAside) > 0 {
			if o.JSON {
				_ = writeJSON(out, res)
			} else {
				printTargetResult(out, res)
			}
		}
		return restoreError(err, ro.Target)
	}
	if o.JSON {
		if err := writeJSON(out, res); err != nil {
			return err
		}
	} else {
		printTargetResult(out, res)
	}
	if !res.Check.OK {
		return &userError{err: fmt.Errorf("the restored copy in %s differs from the archive's manifest: %s", res.Dir, strings.Join(res.Check.Problems, "; ")),
			hint: "run `cht-backup check` on the repository and try an older archive (`cht-backup archives`)"}
	}
	return nil
}

func printTargetResult(w io.Writer, res *restore.TargetResult) {
	fmt.Fprintf(w, "restored archive %s of %s into %s\n", res.Archive, res.Repository, res.Dir)
	width := len("unsorted/")
	rels := map[string]string{}
	for _, pl := range res.Placed {
		rel, err := filepath.Rel(res.Dir, pl.To)
		if err != nil {
			rel = pl.To
		}
		if fi, err := os.Lstat(pl.To); err == nil && fi.IsDir() {
			rel += "/"
		}
		rels[pl.To] = rel
		width = max(width, len(rel))
	}
	for _, pl := range res.Placed {
		extra := ""
		if pl.Group == sources.GroupCouchDB && res.Manifest != nil {
			d := res.Manifest.CouchDB.DataDir
			extra = fmt.Sprintf("  (COUCHDB_DATA was %s; mode %s, owner %d:%d)", res.Manifest.Sources.CouchDBData, d.Mode, d.UID, d.GID)
		}
		if pl.Group == restore.GroupManifest {
			extra = "  (what the archive holds)"
		}
		fmt.Fprintf(w, "  %-*s  %s%s\n", width, rels[pl.To], pl.Describe(), extra)
	}
	if len(res.Unsorted) > 0 {
		fmt.Fprintf(w, "  %-*s  %d archive items the layout does not cover\n", width, "unsorted/", len(res.Unsorted))
	}
	for _, mv := range res.MovedAside {
		fmt.Fprintf(w, "moved aside (nothing was deleted): %s -> %s\n", mv.From, mv.To)
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "not in this archive: %s\n", s)
	}
	if len(res.Check.Groups) > 0 {
		fmt.Fprintf(w, "compared with the manifest:\n")
		printGroupChecks(w, res.Check.Groups)
		if res.Check.OK {
			fmt.Fprintf(w, "  verdict: OK, the files in %s are the ones that were backed up\n", res.Dir)
		} else {
			fmt.Fprintf(w, "  verdict: FAILED: %s\n", strings.Join(res.Check.Problems, "; "))
		}
	}
}

func printGroupChecks(w io.Writer, groups []restore.GroupCheck) {
	for _, g := range groups {
		mark := "ok     "
		switch {
		case g.Skipped:
			mark = "skipped"
		case !g.OK:
			mark = "FAILED "
		}
		fmt.Fprintf(w, "  %s %-16s %s\n", mark, g.Name, g.Line)
	}
}

// restoreError gives the errors of a restore their next step.
func restoreError(err error, target string) error {
	var ue *userError
	if errors.As(err, &ue) {
		return err
	}
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		return err // borg's own hint applies
	}
	hint := "fix the cause above and run again"
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, borg.ErrCancelled):
		hint = "the restore was interrupted before it changed anything on this host; run it again when you are ready"
	case errors.Is(err, restore.ErrTargetOwner):
		return &userError{err: err, hint: "restore into a directory of your own, e.g. a new one (it is created with mode 0700)", code: exitUsage}
	case errors.Is(err, restore.ErrTargetNotEmpty):
		hint = "choose an empty or new directory, or add --force (what the restore would replace is moved aside, nothing is deleted)"
	case errors.Is(err, restore.ErrNoSpace):
		hint = "free space there, or restore onto a larger disk"
	case errors.Is(err, restore.ErrNotCHTBackup):
		hint = "choose an archive made by cht-backup (see `cht-backup archives`)"
	case errors.Is(err, restore.ErrIncomplete):
		hint = "check free space and permissions where the archive was extracted, then run again"
	case errors.Is(err, restore.ErrMountPoint):
		hint = "restore --target into a directory on that disk and move the files in by hand, or mount the disk one level higher"
	case errors.Is(err, restore.ErrNoContainer):
		hint = "start CHT once so its containers exist (cd <cht-dir>/upgrade-service && docker compose up -d), then run the restore again"
	case target != "":
		hint = "check that " + target + " can be written (run as root to keep owners)"
	}
	return &userError{err: err, hint: hint}
}

func restoreInPlace(ctx context.Context, o *options, src restore.Source, ro restoreOptions, in *os.File, out io.Writer, prog *progressLine,
	asJob func(func(context.Context, *state.Outcome) error) error) error {
	docker, err := sources.NewDockerClient(ctx)
	if err != nil {
		return &userError{err: err, hint: "start Docker: an in-place restore stops CHT's containers and copies files back into them (or restore --target and copy by hand)"}
	}
	defer docker.Close()
	plan, err := restore.PlanInPlace(ctx, restore.InPlaceOptions{Source: src, CHTDir: o.ChtDir, StateDir: o.StateDir, Docker: docker,
		CouchDB: restore.DrillOptions{Mode: ro.CouchDB, Docker: docker, Log: o.Log}, Log: o.Log})
	if err != nil {
		return restoreError(err, "")
	}
	defer func() {
		if err := plan.Close(); err != nil {
			o.Log.Error(err)
		}
	}()
	planOut := out
	if o.JSON {
		planOut = os.Stderr
	}
	plan.Describe(planOut)
	if !ro.Yes {
		if !isTerminal(in) {
			return &userError{err: errors.New("an in-place restore needs a confirmation, and there is no terminal to ask on; nothing was changed"),
				hint: "read the plan above and run again with --yes", code: exitUsage}
		}
		fmt.Fprint(os.Stderr, "Type yes to restore in place: ")
		answer, _ := bufio.NewReader(in).ReadString('\n')
		if strings.TrimSpace(answer) != "yes" {
			return &userError{err: errors.New("not confirmed; nothing was changed"), hint: "run again and answer yes to restore", code: exitUsage}
		}
	}
	return asJob(func(ctx context.Context, oc *state.Outcome) error {
		res, runErr := plan.Run(ctx)
		prog.done()
		oc.CouchDB = drillState(res.CouchDB)
		if o.JSON {
			if err := writeJSON(out, res); err != nil {
				return err
			}
		} else {
			printInPlaceResult(out, res)
		}
		if runErr != nil {
			if len(res.Recovery) == 0 {
				return restoreError(runErr, "")
			}
			return &userError{err: runErr, hint: "the lines above say what state this host is in; the commands under \"to go back\" return it to the state before the restore"}
		}
		if len(res.Warnings) > 0 {
			oc.Warnings = res.Warnings // status and the metrics name the container, not just a count
			return warnings{n: len(res.Warnings)}
		}
		return nil
	})
}

func printInPlaceResult(w io.Writer, res *restore.InPlaceResult) {
	if res.OK {
		fmt.Fprintf(w, "restored archive %s of %s in place\n", res.Archive, res.Repository)
	} else {
		fmt.Fprintf(w, "restore in place FAILED at step %q: %s\n", res.FailedStep, res.Error)
	}
	printCouchDBDrill(w, res.CouchDB) // before CHT was stopped
	var stopped []string
	for _, c := range res.Stopped {
		stopped = append(stopped, c.Name)
	}
	if len(stopped) > 0 {
		fmt.Fprintf(w, "  stopped: %s\n", strings.Join(stopped, ", "))
	}
	for _, s := range res.Saved {
		fmt.Fprintf(w, "  saved the files of %s:%s to %s\n", s.Container, s.Dir, s.SavedTo)
	}
	for _, mv := range res.MovedAside {
		fmt.Fprintf(w, "  moved aside: %s -> %s\n", mv.From, mv.To)
	}
	for _, pl := range res.Placed {
		fmt.Fprintf(w, "  put in place (%s): %s\n", pl.Describe(), pl.To)
	}
	for _, pb := range res.PutBack {
		fmt.Fprintf(w, "  copied into %s:%s: %s\n", pb.Container, pb.Dir, strings.Join(pb.Files, ", "))
	}
	for _, c := range res.Started {
		fmt.Fprintf(w, "  started: %s is %s\n", c.Name, c.State)
	}
	for _, wn := range res.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if res.OK && len(res.MovedAside)+len(res.Saved) > 0 {
		fmt.Fprintf(w, "the moved-aside copies and saved container files are kept: remove them yourself once CHT works\n")
	}
	if !res.OK {
		fmt.Fprintf(w, "state of this host now:\n")
		for _, s := range res.State {
			fmt.Fprintf(w, "  %s\n", s)
		}
		if len(res.Recovery) > 0 {
			fmt.Fprintf(w, "to go back to the state before the restore, run:\n")
			for _, cmd := range res.Recovery {
				fmt.Fprintf(w, "  %s\n", cmd)
			}
		}
	}
}
