package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/urfave/cli/v2"
)

// commit is set at build time with -ldflags "-X main.commit=..."; without it the VCS revision Go
// recorded in the binary, if any, is used.
var commit = ""

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
	}
	return "unknown"
}

// printVersion is `cht-backup --version`: the tool's version and commit, and the borg it would run
// (CHT_BACKUP_BORG, or borg from PATH), since a bug report needs both.
func printVersion(c *cli.Context) {
	fmt.Fprintf(c.App.Writer, "cht-backup %s (commit %s)\n", version, buildCommit())
	bin := os.Getenv(envName("borg"))
	if bin == "" {
		bin = "borg"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		fmt.Fprintf(c.App.Writer, "borg: %s not found (install the borgbackup package or set %s)\n", bin, envName("borg"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := borg.NewRunner(borg.Credentials{}, nil)
	r.Binary = path
	v, err := r.DetectVersion(ctx)
	switch {
	case err != nil && v == (borg.Version{}):
		fmt.Fprintf(c.App.Writer, "borg: %s: %v\n", path, err)
	case err != nil:
		fmt.Fprintf(c.App.Writer, "borg %s (%s): %v\n", v, path, err)
	default:
		fmt.Fprintf(c.App.Writer, "borg %s (%s)\n", v, path)
	}
}
