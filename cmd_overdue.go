package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func overdueCommand() *cli.Command {
	return &cli.Command{
		Name:      "overdue",
		Usage:     "on the backup server: name each repository that received no archive for longer than --max-age",
		ArgsUsage: "PATH...",
		Description: "Reads borg's own files in each repository directory (its segments and transaction log) to learn\n" +
			"when it last received a committed archive. It needs no key and no passphrase, takes no lock, and so\n" +
			"works while a backup runs and when the CHT host is dead or compromised.\n" +
			"Exit 0: every repository is fresh. Exit 2: one or more are overdue or cannot be read (named).",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.DurationFlag{Name: "max-age", Value: defaultMaxAge, EnvVars: []string{envName("max-age")}, Usage: "a repository whose last archive is older than `DURATION` is overdue"},
			&cli.StringFlag{Name: "textfile", EnvVars: []string{envName("textfile")}, Usage: "also write the result as Prometheus text to `FILE` (node_exporter's textfile collector), atomically"},
		},
		Action: withOptions(func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("overdue needs the repository directories: cht-backup overdue /home/borg/repos/cht...")
			}
			return nil
		}, func(c *cli.Context, o *options) error {
			if c.Duration("max-age") <= 0 {
				return usageErrorf("--max-age must be a positive duration such as 26h, not %s", c.Duration("max-age"))
			}
			return runOverdue(o, c.Args().Slice(), c.Duration("max-age"), c.String("textfile"), time.Now(), os.Stdout)
		}),
	}
}

func runOverdue(o *options, paths []string, maxAge time.Duration, textfile string, now time.Time, out io.Writer) error {
	for i, p := range paths {
		if abs, err := filepath.Abs(p); err == nil {
			paths[i] = abs
		}
	}
	ws := state.Watches(paths, borg.ReadActivity, maxAge, now)
	if o.JSON {
		if err := writeJSON(out, ws); err != nil {
			return err
		}
	} else {
		printWatches(out, ws, now)
	}
	if textfile != "" {
		err := state.WriteFileAtomic(textfile, 0o644, func(w io.Writer) error { _, err := w.Write(state.WatchMetrics(ws, maxAge)); return err })
		if err != nil {
			return &userError{err: err, hint: "check that --textfile names a file in a directory this user may write"}
		}
	}
	late := 0
	for _, w := range ws {
		if w.Overdue {
			late++
		}
	}
	if late > 0 {
		return &userError{err: fmt.Errorf("%d of %d repositories overdue", late, len(ws)), quiet: o.JSON,
			hint: "check the CHT host behind each one named: `cht-backup status` there, or `journalctl -u cht-backup-backup.service`"}
	}
	return nil
}

func printWatches(w io.Writer, ws []state.Watch, now time.Time) {
	for _, x := range ws {
		label := "ok     "
		if x.Overdue {
			label = "OVERDUE"
		}
		a := x.Activity
		if a == nil || a.LastArchive.IsZero() {
			fmt.Fprintf(w, "%s %s: %s\n", label, x.Path, x.Problem)
			continue
		}
		line := fmt.Sprintf("%s %s: last archive %s (%s ago)", label, x.Path, when(a.LastArchive), humanAge(now.Sub(a.LastArchive)))
		if a.Estimated {
			line += ", at the latest (compacted since)"
		}
		line += ", " + sources.HumanBytes(a.Bytes) + " on disk"
		if a.FreeBytes >= 0 {
			line += ", " + sources.HumanBytes(a.FreeBytes) + " free"
		}
		if a.Locked {
			line += ", locked now (a backup or another borg run is under way)"
		}
		fmt.Fprintln(w, line)
		if x.Overdue {
			fmt.Fprintf(w, "        %s\n", x.Problem)
		}
	}
}
