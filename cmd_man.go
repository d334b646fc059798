package main

import (
	"fmt"

	"github.com/cht-backup/cht-backup/clidoc"
	"github.com/urfave/cli/v2"
)

// appDescription is the DESCRIPTION of `cht-backup --help` and of the man page.
const appDescription = `cht-backup backs up a Community Health Toolkit server to borg repositories: the CouchDB data,
upgrade-service/.env, the compose files, the TLS certificate and key, and CouchDB's credentials. Start with
preflight and init, then let schedule install set up the nightly backup, weekly check and monthly restore drill.

Settings come from the command-line flags, then CHT_BACKUP_<NAME> environment variables (the flag name in
upper case, - as _), then the config file (--config, default /etc/cht-backup/cht-backup.env), then the
defaults. Flags may come before or after a command's arguments.

Exit status: 0 success; 1 finished with warnings (e.g. a file changed while borg read it); 2 failed;
3 bad command line or configuration, nothing done; 75 another run held this host's lock past --lock-wait;
130 interrupted, borg stopped cleanly.

Files: /etc/cht-backup/ (config, passphrase, SSH key, known_hosts; mode 0700), /var/lib/cht-backup/ (state,
exported keys, metrics). The repository key and the passphrase are both needed to restore: keep copies
away from this server.`

// manCommand prints the man page; the Debian package ships it, so it is hidden from the help.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (roff), e.g. cht-backup man > /usr/local/share/man/man1/cht-backup.1",
		Hidden: true,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			page, err := clidoc.Man(c.App, commonFlags())
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}
