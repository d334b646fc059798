package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cht-backup/cht-backup/borg"
)

// The weekly check service prunes after a check that did its work, never after a failed one.
func TestWeeklyCheckThenPrune(t *testing.T) {
	o := &options{StateDir: "/var/lib/cht-backup", MetricsFile: "/var/lib/cht-backup/metrics/cht_backup.prom"}
	units, err := renderUnits(o, scheduleOptions{Binary: "/usr/local/bin/cht-backup", Config: "/etc/cht-backup/cht-backup.env",
		BackupCalendar: defaultBackupCalendar, CheckCalendar: defaultCheckCalendar, VerifyCalendar: defaultVerifyCalendar, Home: "/root"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		execs := lines(u.Content, "ExecStart=")
		switch u.Name {
		case "cht-backup-check.service":
			want := []string{"ExecStart=/usr/local/bin/cht-backup check --config /etc/cht-backup/cht-backup.env --lock-wait 3h",
				"ExecStart=/usr/local/bin/cht-backup prune --config /etc/cht-backup/cht-backup.env --lock-wait 3h"}
			if strings.Join(execs, "\n") != strings.Join(want, "\n") || !strings.Contains(u.Content, "Type=oneshot") {
				t.Errorf("check service runs:\n%s\nwant, one after the other in a oneshot service:\n%s", strings.Join(execs, "\n"), strings.Join(want, "\n"))
			}
		case "cht-backup-backup.service", "cht-backup-verify.service":
			if len(execs) != 1 || strings.Contains(u.Content, " prune ") {
				t.Errorf("%s runs %v", u.Name, execs)
			}
		}
	}
}

// `schedule print --server` gives the backup server everything, per server: this host's
// append-only line, the compaction key's line without append-only on the same paths, and units
// that check, then compact, and watch with overdue.
func TestSchedulePrintServer(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	pub := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZpQO539gZYgWfbSsy7hVuD2BTrYiaax2ZWUHOAkh15 x"
	if err := os.WriteFile(key+".pub", []byte(pub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var repos []borg.Repository
	for _, s := range []string{"ssh://borg@backup.example.org:2200/srv/borg/cht", "borg@backup.example.org:other", "/mnt/usb/cht"} {
		r, err := borg.ParseRepository(s)
		if err != nil {
			t.Fatal(err)
		}
		repos = append(repos, r)
	}
	o := &options{Repos: repos, SSHKey: key}
	var out bytes.Buffer
	if err := runSchedulePrintServer(o, serverOptions{Binary: "/usr/local/bin/cht-backup", CompactCalendar: defaultCompactCalStr, MaxAge: "26h", TextfileDir: defaultServerTextfile}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	host, _ := os.Hostname()
	unit := unitSafe(host)
	for _, want := range []string{
		`command="borg serve --append-only --restrict-to-path /srv/borg/cht",restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZpQO539gZYgWfbSsy7hVuD2BTrYiaax2ZWUHOAkh15 cht-backup@`,
		`command="borg serve --append-only --restrict-to-path other",restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZpQO539gZYgWfbSsy7hVuD2BTrYiaax2ZWUHOAkh15 cht-backup@`,
		`echo "command=\"borg serve --restrict-to-path /srv/borg/cht\",restrict $(cat /etc/cht-backup-server/compact_ed25519.pub)" >> /home/borg/.ssh/authorized_keys`,
		`echo "command=\"borg serve --restrict-to-path /home/borg/other\",restrict $(cat /etc/cht-backup-server/compact_ed25519.pub)" >> /home/borg/.ssh/authorized_keys`,
		`echo "[localhost]:2200 $(cut -d' ' -f1,2 "$k")"`,
		"sudo -u borg borg config /srv/borg/cht append_only 0",
		"ExecCondition=/usr/local/bin/cht-backup overdue --max-age 26h /srv/borg/cht\n",
		"ExecStart=borg check --repository-only ssh://borg@localhost:2200/srv/borg/cht\nExecStart=borg compact ssh://borg@localhost:2200/srv/borg/cht\n",
		"ExecStart=borg check --repository-only ssh://borg@localhost/home/borg/other\nExecStart=borg compact ssh://borg@localhost/home/borg/other\n",
		"ExecStart=/usr/local/bin/cht-backup overdue --max-age 26h --textfile /var/lib/prometheus/node-exporter/cht_backup_server_" + unit + ".prom /home/borg/other\n",
		"cat > /etc/systemd/system/cht-backup-compact-" + unit + ".timer <<'UNIT'",
		"OnCalendar=Sun *-*-* 12:00:00",
		"systemctl enable --now cht-backup-compact-" + unit + ".timer cht-backup-overdue-" + unit + ".timer",
		"/mnt/usb/cht is a local path",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("server setup lacks %q:\n%s", want, got)
		}
	}
	// Two servers (the port differs): each gets its own section, and no line mixes them up.
	if n := strings.Count(got, "# ==== Backup server backup.example.org"); n != 2 {
		t.Errorf("%d server sections, want 2 (port 2200 and 22 are two sshd)", n)
	}
	if strings.Contains(got, "--append-only --restrict-to-path /home/borg/other") || strings.Contains(got, "borg serve --append-only\\\"") {
		t.Errorf("the compaction key must not be append-only, the host's key must:\n%s", got)
	}
}
