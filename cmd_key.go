package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "manage the repository key",
		Subcommands: []*cli.Command{{
			Name:  "export",
			Usage: "export each repository's key (plain and --paper) to files under the state dir, or to --output",
			Description: "Restoring needs the key and the passphrase. The key is kept inside the repository (repokey), so a\n" +
				"damaged repository can take it along: keep an exported copy, and the passphrase, away from this server.",
			Flags: []cli.Flag{
				jsonFlag,
				&cli.StringFlag{Name: "output", Usage: "write the key to `FILE` (mode 0600) instead; needs exactly one repository"},
				&cli.BoolFlag{Name: "paper", Usage: "with --output: the printable text form"},
			},
			Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
				return runKeyExport(c.Context, o, c.String("output"), c.Bool("paper"), os.Stdout)
			}),
		}},
	}
}

// KeyExport says where one repository's key went.
type KeyExport struct {
	Repository   string `json:"repository"`
	KeyFile      string `json:"key_file"`
	PaperKeyFile string `json:"paper_key_file,omitempty"`
}

func runKeyExport(ctx context.Context, o *options, output string, paper bool, out io.Writer) error {
	if err := o.requireRepos(); err != nil {
		return err
	}
	if output != "" && len(o.Repos) != 1 {
		return usageErrorf("--output needs exactly one repository; give --repo")
	}
	r, err := o.runner(ctx, false)
	if err != nil {
		return err
	}
	var done []KeyExport
	for _, repo := range o.Repos {
		if output != "" {
			if err := exportKey(ctx, r, repo, output, paper); err != nil {
				return err
			}
			done = append(done, KeyExport{Repository: repo.Raw, KeyFile: output})
			continue
		}
		e, err := exportKeys(ctx, r, repo, filepath.Join(o.StateDir, "keys"))
		if err != nil {
			return err
		}
		done = append(done, e)
	}
	if o.JSON {
		return writeJSON(out, done)
	}
	for _, e := range done {
		fmt.Fprintf(out, "%s: key exported to %s", e.Repository, e.KeyFile)
		if e.PaperKeyFile != "" {
			fmt.Fprintf(out, " and %s", e.PaperKeyFile)
		}
		fmt.Fprintln(out, " (mode 0600)")
	}
	fmt.Fprintln(out, "Keep a copy of the key and the passphrase away from this server: restoring needs both.")
	return nil
}

// exportKeys writes a repository's key, plain and paper, into dir (mode 0700) under a file name
// made from the repository URL.
func exportKeys(ctx context.Context, r *borg.Runner, repo borg.Repository, dir string) (KeyExport, error) {
	// The state dir first, with its own mode; keys/ inside it is for root alone.
	if err := state.MakeDir(filepath.Dir(dir)); err != nil {
		return KeyExport{}, &userError{err: err, hint: "check --state-dir and run as the user that owns it"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return KeyExport{}, &userError{err: fmt.Errorf("cannot create %s: %v", dir, errors.Unwrap(err)), hint: "check --state-dir and run as the user that owns it"}
	}
	_ = os.Chmod(dir, 0o700)
	base := filepath.Join(dir, slug(repo.Raw))
	e := KeyExport{Repository: repo.Raw, KeyFile: base + ".key", PaperKeyFile: base + ".paper.txt"}
	if err := exportKey(ctx, r, repo, e.KeyFile, false); err != nil {
		return e, err
	}
	return e, exportKey(ctx, r, repo, e.PaperKeyFile, true)
}
