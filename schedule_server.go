package main

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"text/template"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/urfave/cli/v2"
)

// The backup server's units: compaction (the only place space comes back from an append-only
// repository) and the overdue watch.
//
//go:embed scripts/systemd/server/*.tmpl
var serverTemplates embed.FS

const (
	serverDir             = "/etc/cht-backup-server"
	serverCompactKey      = serverDir + "/compact_ed25519"
	serverKnownHosts      = serverDir + "/known_hosts"
	defaultServerBinary   = "/usr/local/bin/cht-backup"
	defaultCompactCalStr  = "Sun *-*-* 12:00:00"
	defaultServerTextfile = "/var/lib/prometheus/node-exporter"
)

// serverRepo is one of this host's repositories as the backup server sees it.
type serverRepo struct {
	URL string // for borg on the server itself, through the compaction key
	Dir string // the repository directory, for overdue
}

// serverOptions are the settings of the backup server's side.
type serverOptions struct {
	Binary          string
	CompactCalendar string
	MaxAge          string
	TextfileDir     string
}

// runSchedulePrintServer prints, per backup server, what it needs for this CHT host: the
// restricted authorized_keys line of this host's key, a compaction key restricted to the
// repositories without append-only, and the compaction and overdue units.
func runSchedulePrintServer(o *options, sv serverOptions, out io.Writer) error {
	if err := o.requireRepos(); err != nil {
		return err
	}
	if err := checkCalendar(sv.CompactCalendar); err != nil {
		return err
	}
	host, _ := os.Hostname()
	unitHost := unitSafe(host)
	type server struct {
		name, user string
		port       int
		repos      []borg.Repository
	}
	var servers []*server
	for _, r := range o.Repos {
		if r.Local() {
			fmt.Fprintf(out, "# %s is a local path: it needs no server setup. Prune frees its space only after `borg compact` (see the README).\n\n", r.Raw)
			continue
		}
		var s *server
		for _, x := range servers {
			if x.name == r.Host && x.port == r.Port && x.user == r.User {
				s = x
			}
		}
		if s == nil {
			s = &server{name: r.Host, user: r.User, port: r.Port}
			servers = append(servers, s)
		}
		s.repos = append(s.repos, r)
	}
	tmpl, err := template.ParseFS(serverTemplates, "scripts/systemd/server/*.tmpl")
	if err != nil {
		return err
	}
	for _, s := range servers {
		user := s.user
		if user == "" {
			user = "borg"
		}
		home := "/home/" + user
		var repos []serverRepo
		var paths []string
		for _, r := range s.repos {
			dir := r.Path
			if !path.IsAbs(dir) {
				dir = path.Join(home, dir)
			}
			url := "ssh://" + user + "@localhost"
			if s.port != 0 {
				url += ":" + strconv.Itoa(s.port)
			}
			repos = append(repos, serverRepo{URL: url + dir, Dir: dir})
			paths = append(paths, dir)
		}
		fmt.Fprintf(out, "# ==== Backup server %s, for CHT host %s (cht-backup %s) ====\n", s.name, host, version)
		fmt.Fprintf(out, "# Run the steps below on %s as root. The trust split: this CHT host's key can add archives and mark\n"+
			"# them deleted, but never destroy history; the server's own compaction key frees only what was marked,\n"+
			"# and not while this host has stopped backing up (it may be compromised).\n", s.name)
		fmt.Fprintf(out, "# Paths assume %s's home is %s; change them where it is not.\n\n", user, home)

		fmt.Fprintf(out, "## 1. This CHT host's key: append-only, restricted to its repository. Append to %s/.ssh/authorized_keys:\n", home)
		for _, r := range s.repos {
			line, err := authorizedKeysLine(o.SSHKey, r)
			if err != nil {
				return &userError{err: err, hint: "give --ssh-key the private key this host uses for the backup server (its .pub beside it)"}
			}
			fmt.Fprintln(out, line)
		}

		fmt.Fprintf(out, "\n## 2. The compaction key: borg serve without --append-only, on these repositories only, held by root here.\n")
		fmt.Fprintf(out, "install -d -m 0700 %s /var/lib/cht-backup-server\n", serverDir)
		fmt.Fprintf(out, "ssh-keygen -t ed25519 -N '' -C 'cht-backup compaction on %s' -f %s\n", s.name, serverCompactKey)
		var restrict []string
		for _, p := range paths {
			restrict = append(restrict, "--restrict-to-path "+p)
		}
		fmt.Fprintf(out, "echo \"command=\\\"borg serve %s\\\",restrict $(cat %s.pub)\" >> %s/.ssh/authorized_keys\n", strings.Join(restrict, " "), serverCompactKey, home)
		fmt.Fprintf(out, "# this server's own host key, so the compaction's ssh checks it strictly:\n")
		fmt.Fprintf(out, "for k in /etc/ssh/ssh_host_*_key.pub; do echo \"%s $(cut -d' ' -f1,2 \"$k\")\"; done > %s\n", knownHostsName(s.port), serverKnownHosts)
		fmt.Fprintf(out, "# borg's own append-only flag would keep compaction from freeing anything; the CHT host's forced\n# command above keeps it append-only for the host whatever this flag says:\n")
		for _, p := range paths {
			fmt.Fprintf(out, "sudo -u %s borg config %s append_only 0\n", user, borg.ShellQuote(p))
		}
		fmt.Fprintf(out, "# install this cht-backup binary at %s on this server too (overdue below runs it).\n", sv.Binary)

		data := map[string]any{
			"Version": version, "Binary": systemdWord(sv.Binary), "Key": serverCompactKey, "KnownHosts": serverKnownHosts,
			"Repos": repos, "MaxAge": sv.MaxAge, "CompactCalendar": strings.ReplaceAll(sv.CompactCalendar, "%", "%%"),
			"Textfile": path.Join(sv.TextfileDir, "cht_backup_server_"+unitHost+".prom"), "TextfileDir": sv.TextfileDir,
		}
		fmt.Fprintf(out, "\n## 3. The units: weekly check and compaction, hourly overdue watch (node_exporter textfile in %s).\n", sv.TextfileDir)
		var timers []string
		for _, job := range []string{"compact", "overdue"} {
			unit := "cht-backup-" + job + "-" + unitHost
			timers = append(timers, unit+".timer")
			for _, kind := range []string{"service", "timer"} {
				var b bytes.Buffer
				if err := tmpl.ExecuteTemplate(&b, "cht-backup-"+job+"."+kind+".tmpl", data); err != nil {
					return err
				}
				fmt.Fprintf(out, "cat > /etc/systemd/system/%s.%s <<'UNIT'\n%sUNIT\n", unit, kind, b.String())
			}
		}
		fmt.Fprintf(out, "\n## 4. Start them.\nsystemctl daemon-reload && systemctl enable --now %s\n\n", strings.Join(timers, " "))
	}
	return nil
}

// knownHostsName is how ssh looks up localhost on port.
func knownHostsName(port int) string {
	if port == 0 || port == 22 {
		return "localhost"
	}
	return fmt.Sprintf("[localhost]:%d", port)
}

// unitSafe keeps a host name to what a unit file name may hold.
func unitSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "host"
	}
	return b.String()
}

func serverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "server", Usage: "print what the backup server needs: this host's authorized_keys line, a compaction key, the compaction and overdue units"},
		&cli.StringFlag{Name: "server-binary", Value: defaultServerBinary, Usage: "`PATH` of cht-backup on the backup server"},
		&cli.StringFlag{Name: "compact-calendar", Value: defaultCompactCalStr, Usage: "when the server checks and compacts (weekly, after this host's check and prune), an OnCalendar `SPEC`"},
		&cli.StringFlag{Name: "server-textfile-dir", Value: defaultServerTextfile, Usage: "node_exporter's textfile `DIR` on the backup server"},
	}
}

func serverOptionsOf(c *cli.Context) serverOptions {
	return serverOptions{Binary: c.String("server-binary"), CompactCalendar: c.String("compact-calendar"),
		MaxAge: defaultMaxAge.String(), TextfileDir: c.String("server-textfile-dir")}
}
