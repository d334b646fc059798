package main

import (
	"fmt"
	"strings"

	"github.com/cht-backup/cht-backup/clidoc"
	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	cmd := &cli.Command{
		Name:  "completion",
		Usage: "print the shell completion script (" + strings.Join(clidoc.Shells, " or ") + ")",
		Description: "The Debian package installs both. Built from source: cht-backup completion bash >\n" +
			"/etc/bash_completion.d/cht-backup, or source <(cht-backup completion bash) in ~/.bashrc.",
	}
	for _, shell := range clidoc.Shells {
		cmd.Subcommands = append(cmd.Subcommands, &cli.Command{
			Name:  shell,
			Usage: "print the " + shell + " completion script, generated from the command definitions",
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				script, err := clidoc.Completion(c.App, shell)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.App.Writer, script)
				return err
			},
		})
	}
	return cmd
}
