package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/systemd"
)

func scheduleFixture(t *testing.T) (*options, scheduleOptions) {
	t.Helper()
	o, _ := jobOptions(t, "/var/lib/cht-backup", "ssh://borg@backup.example/./cht", "/mnt/usb disk/cht", "/var/lib/cht-backup/local-repo")
	o.MetricsFile = "/var/lib/node_exporter/textfile_collector/cht_backup.prom"
	return o, scheduleOptions{
		Binary: "/usr/local/bin/cht-backup", Config: "/etc/cht-backup/cht-backup.env",
		BackupCalendar: defaultBackupCalendar, CheckCalendar: defaultCheckCalendar, VerifyCalendar: defaultVerifyCalendar,
		RandomizedDelay: defaultRandomDelay, UnitDir: t.TempDir(), Home: "/root",
	}
}

// directives reads a unit file into section.Key -> values, in order.
func directives(content string) map[string][]string {
	m := map[string][]string{}
	section := ""
	for _, l := range strings.Split(content, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, _ := strings.Cut(l, "=")
			k = section + "." + strings.TrimSpace(k)
			m[k] = append(m[k], strings.TrimSpace(v))
		}
	}
	return m
}

// last is the value systemd uses for a single-valued setting: the last assignment wins.
func last(d map[string][]string, key string) string {
	if v := d[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// execArgv splits an ExecStart= value of the fixture (no quoting, no escapes) into its argv.
func execArgv(v string) (cmd []string, flags map[string]string) {
	words := strings.Fields(v)
	flags = map[string]string{}
	for i := 0; i < len(words); i++ {
		if strings.HasPrefix(words[i], "--") {
			if i+1 < len(words) && !strings.HasPrefix(words[i+1], "--") {
				flags[words[i]] = words[i+1]
				i++
			} else {
				flags[words[i]] = ""
			}
			continue
		}
		cmd = append(cmd, words[i])
	}
	return cmd, flags
}

// The units hold what makes the schedule work and keep the host safe, whatever their comments
// and the version they name: each job runs the right command with the config file and a lock
// wait; missed runs are caught up and starts spread; the job runs at low priority in a hardened
// sandbox that may write only the state dir, borg's dirs, local repositories and the metrics.
func TestScheduleUnitsContent(t *testing.T) {
	o, so := scheduleFixture(t)
	so.BackupCalendar = "*-*-* 01:15:00"
	units, err := renderUnits(o, so)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]string{}
	for _, u := range units {
		names = append(names, u.Name)
		byName[u.Name] = u.Content
	}
	want := []string{"cht-backup-backup.service", "cht-backup-backup.timer", "cht-backup-check.service", "cht-backup-check.timer", "cht-backup-verify.service", "cht-backup-verify.timer"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("units: %v", names)
	}

	jobs := []struct {
		job, calendar string
		then          []string // commands run after the job, in order
	}{
		{"backup", "*-*-* 01:15:00", nil},
		{"check", "Sun *-*-* 04:30:00", []string{"prune"}},
		{"verify", "*-*-01 05:30:00", nil},
	}
	for _, j := range jobs {
		unit := "cht-backup-" + j.job
		t.Run(j.job, func(t *testing.T) {
			svc := directives(byName[unit+".service"])
			execs := svc["Service.ExecStart"]
			if len(execs) != 1+len(j.then) {
				t.Fatalf("ExecStart=%q, want %s then %v", execs, j.job, j.then)
			}
			for i, sub := range append([]string{j.job}, j.then...) {
				cmd, flags := execArgv(execs[i])
				if !reflect.DeepEqual(cmd, []string{so.Binary, sub}) {
					t.Errorf("ExecStart #%d runs %q, want %s %s", i+1, cmd, so.Binary, sub)
				}
				if want := map[string]string{"--config": so.Config, "--lock-wait": "3h"}; !reflect.DeepEqual(flags, want) {
					t.Errorf("ExecStart #%d flags %v, want %v", i+1, flags, want)
				}
			}
			// The config is cht-backup's to read (--config above), never systemd's.
			if v, ok := svc["Service.EnvironmentFile"]; ok {
				t.Errorf("EnvironmentFile=%q: systemd would read the config file differently from cht-backup", v)
			}
			if got := svc["Service.Environment"]; !reflect.DeepEqual(got, []string{"HOME=/root"}) {
				t.Errorf("Environment=%q, want HOME=/root (borg's cache and keys)", got)
			}
			// Exit 1 (warnings) is success; 2 (failed) and 75 (lock held) fail the unit.
			if got := strings.Fields(last(svc, "Service.SuccessExitStatus")); !reflect.DeepEqual(got, []string{"1"}) {
				t.Errorf("SuccessExitStatus=%q, want 1 alone", got)
			}
			// SIGTERM to cht-backup alone, which stops borg with SIGINT within borg's 60 s grace.
			if last(svc, "Service.KillMode") != "mixed" {
				t.Errorf("KillMode=%q, want mixed", last(svc, "Service.KillMode"))
			}
			if n, err := strconv.Atoi(last(svc, "Service.TimeoutStopSec")); err != nil || n <= 60 {
				t.Errorf("TimeoutStopSec=%q, want more than borg's 60 s grace", last(svc, "Service.TimeoutStopSec"))
			}
			for key, want := range map[string]string{
				"Service.Type": "oneshot", "Service.Nice": "10", "Service.IOSchedulingClass": "idle", "Service.UMask": "0077",
				"Service.ProtectSystem": "strict", "Service.ProtectHome": "read-only", "Service.PrivateTmp": "true",
				"Service.PrivateDevices": "true", "Service.NoNewPrivileges": "true", "Service.ProtectKernelTunables": "true",
				"Service.ProtectKernelModules": "true", "Service.ProtectKernelLogs": "true", "Service.ProtectControlGroups": "true",
				"Service.ProtectClock": "true", "Service.ProtectHostname": "true", "Service.RestrictRealtime": "true",
				"Service.RestrictSUIDSGID": "true", "Service.RestrictNamespaces": "true", "Service.LockPersonality": "true",
				"Service.SystemCallArchitectures": "native", "Service.SystemCallFilter": "@system-service",
			} {
				if got := last(svc, key); got != want {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
			if got := strings.Fields(last(svc, "Service.RestrictAddressFamilies")); !reflect.DeepEqual(got, []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}) {
				t.Errorf("RestrictAddressFamilies=%q", got)
			}
			caps := strings.Fields(last(svc, "Service.CapabilityBoundingSet"))
			sort.Strings(caps)
			if want := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID"}; !reflect.DeepEqual(caps, want) {
				t.Errorf("CapabilityBoundingSet=%q, want %q", caps, want)
			}
			if !strings.Contains(last(svc, "Unit.After"), "network-online.target") || !strings.Contains(last(svc, "Unit.After"), "docker.service") ||
				!strings.Contains(last(svc, "Unit.Wants"), "network-online.target") {
				t.Errorf("the job must start after the network and Docker: Wants=%q After=%q", svc["Unit.Wants"], svc["Unit.After"])
			}

			// What the sandbox may write, as systemd reads it: exactly these, and each path the
			// job writes lies within one of them.
			file := filepath.Join(t.TempDir(), unit+".service")
			if err := os.WriteFile(file, []byte(byName[unit+".service"]), 0o644); err != nil {
				t.Fatal(err)
			}
			rw, err := systemd.ReadWritePaths(file)
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(rw)
			wantRW := []string{"/mnt/usb disk/cht", "/root/.cache/borg", "/root/.config/borg", "/var/lib/cht-backup", "/var/lib/node_exporter/textfile_collector"}
			if !reflect.DeepEqual(rw, wantRW) {
				t.Errorf("ReadWritePaths %q, want %q", rw, wantRW)
			}
			for _, p := range []string{o.StateDir, "/mnt/usb disk/cht/data", "/var/lib/cht-backup/local-repo", o.MetricsFile, "/root/.cache/borg/x", "/root/.config/borg/security"} {
				if !systemd.Covered(p, rw) {
					t.Errorf("a scheduled %s cannot write %s: ReadWritePaths %q", j.job, p, rw)
				}
			}

			tm := directives(byName[unit+".timer"])
			for key, want := range map[string]string{
				"Timer.OnCalendar": j.calendar, "Timer.Persistent": "true", "Timer.RandomizedDelaySec": "1800",
				"Timer.Unit": unit + ".service", "Install.WantedBy": "timers.target",
			} {
				if got := last(tm, key); got != want {
					t.Errorf("timer %s=%q, want %q", key, got, want)
				}
			}
		})
	}
}

// Specifiers, variables and blanks in paths cannot change what the unit runs.
func TestScheduleUnitsEscapePaths(t *testing.T) {
	o, so := scheduleFixture(t)
	so.Binary = "/opt/cht backup/bin%n/cht-backup"
	so.Config = "/etc/cht backup/100%.env"
	o.StateDir = "/var/lib/$state"
	units, err := renderUnits(o, so)
	if err != nil {
		t.Fatal(err)
	}
	svc := directives(units[0].Content)
	if got := svc["Service.ExecStart"][0]; got != `"/opt/cht backup/bin%%n/cht-backup" backup --config "/etc/cht backup/100%%.env" --lock-wait 3h` {
		t.Errorf("ExecStart=%s", got)
	}
	if got, ok := svc["Service.EnvironmentFile"]; ok {
		t.Errorf("EnvironmentFile=%s: the config file is cht-backup's to read", got)
	}
	if got := svc["Service.ReadWritePaths"][0]; !strings.HasPrefix(got, "/var/lib/$$state ") {
		t.Errorf("ReadWritePaths=%s", got)
	}
	for _, bad := range []scheduleOptions{{Binary: "cht-backup", Config: so.Config}, {Binary: so.Binary, Config: "relative.env"}} {
		bad.BackupCalendar, bad.CheckCalendar, bad.VerifyCalendar = so.BackupCalendar, so.CheckCalendar, so.VerifyCalendar
		if _, err := renderUnits(o, bad); exitCode(err) != exitUsage {
			t.Errorf("relative path accepted: %+v (%v)", bad, err)
		}
	}
	so.BackupCalendar = "02:30\nExecStartPre=/bin/evil"
	if _, err := renderUnits(o, so); exitCode(err) != exitUsage {
		t.Errorf("a line break in a calendar spec must be refused: %v", err)
	}
}

// Where systemd-analyze is installed it verifies the units (it needs no running systemd).
func TestScheduleUnitsPassSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatal("systemd-analyze is not installed; scripts/test-env.sh installs it (package systemd)")
		}
		t.Skip("SKIPPED: systemd-analyze is not installed (scripts/test-env.sh installs it as root); unit files checked by content only")
	}
	dir := t.TempDir()
	o, so := scheduleFixture(t)
	so.Binary, _ = os.Executable() // verify wants an executable that exists
	so.Config = filepath.Join(dir, "cht-backup.env")
	os.WriteFile(so.Config, nil, 0o600)
	units, err := renderUnits(o, so)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, u := range units {
		p := filepath.Join(dir, u.Name)
		os.WriteFile(p, []byte(u.Content), 0o644)
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	// verify exits 0 on unknown keys and bad values, which it only prints: any output is a failure.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.Command(analyze, "calendar", "bogus").CombinedOutput(); err == nil {
		t.Fatalf("systemd-analyze calendar accepts anything? %s", out)
	}
	so.VerifyCalendar = "every full moon"
	if _, err := renderUnits(o, so); err == nil || !strings.Contains(err.Error(), "not valid for systemd") {
		t.Fatalf("a bad calendar spec must be refused: %v", err)
	}
}

// fakeSystemctl stands in for systemctl, which cannot run without systemd: it logs its arguments.
func fakeSystemctl(t *testing.T) (logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "calls")
	script := filepath.Join(dir, "systemctl")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" >> "+logPath+"\n"), 0o755)
	origPath, origRunning := systemctlPath, systemdRunning
	systemctlPath, systemdRunning = script, func() bool { return true }
	t.Cleanup(func() { systemctlPath, systemdRunning = origPath, origRunning })
	return logPath
}

func TestScheduleInstallAndRemoveWithSystemd(t *testing.T) {
	calls := fakeSystemctl(t)
	o, so := scheduleFixture(t)
	home := t.TempDir()
	so.Home = home
	o.StateDir = filepath.Join(nonTmpDir(t), "state")
	o.MetricsFile = filepath.Join(nonTmpDir(t), "textfile_collector", "cht_backup.prom")
	var out, errOut bytes.Buffer
	if err := runScheduleInstall(context.Background(), o, so, &out, &errOut); err != nil {
		t.Fatalf("install: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, n := range unitNames(so, ".service") {
		st, err := os.Stat(filepath.Join(so.UnitDir, n))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Fatalf("%s: %v %v", n, st, err)
		}
	}
	// What the hardened unit may write exists before its first start.
	for _, d := range []string{o.StateDir, filepath.Join(home, ".cache", "borg"), filepath.Join(home, ".config", "borg"), filepath.Dir(o.MetricsFile)} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
	timers := "cht-backup-backup.timer cht-backup-check.timer cht-backup-verify.timer"
	b, _ := os.ReadFile(calls)
	want := "daemon-reload\nenable --now " + timers + "\nlist-timers --all --no-pager " + timers + "\n"
	if string(b) != want {
		t.Fatalf("systemctl calls:\n%s\nwant:\n%s", b, want)
	}

	os.Remove(calls)
	out.Reset()
	if err := runScheduleRemove(context.Background(), so, &out); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(calls)
	services := "cht-backup-backup.service cht-backup-check.service cht-backup-verify.service"
	all := "cht-backup-backup.timer cht-backup-backup.service cht-backup-check.timer cht-backup-check.service cht-backup-verify.timer cht-backup-verify.service"
	if want := "disable --now " + timers + "\nis-active cht-backup-backup.service\nis-active cht-backup-check.service\nis-active cht-backup-verify.service\n" +
		"stop " + services + "\nreset-failed " + all + "\ndaemon-reload\n"; string(b) != want {
		t.Fatalf("systemctl calls on remove:\n%s\nwant:\n%s", b, want)
	}
	if left, _ := os.ReadDir(so.UnitDir); len(left) != 0 {
		t.Fatalf("units left: %v", left)
	}
	out.Reset()
	if err := runScheduleRemove(context.Background(), so, &out); err != nil || !strings.Contains(out.String(), "nothing to remove") {
		t.Fatalf("second remove: %v %s", err, out.String())
	}
}

// This machine has no running systemd (a container): install writes nothing, says so, and gives
// the cron lines; exit 1.
func TestScheduleInstallWithoutSystemdGivesCronLines(t *testing.T) {
	orig := systemdRunning
	systemdRunning = func() bool { return false }
	defer func() { systemdRunning = orig }()
	o, so := scheduleFixture(t)
	var out, errOut bytes.Buffer
	err := runScheduleInstall(context.Background(), o, so, &out, &errOut)
	if exitCode(err) != exitWarning {
		t.Fatalf("want exit 1, got %v", err)
	}
	if !strings.Contains(errOut.String(), "systemd is not running on this machine") || !strings.Contains(errOut.String(), "nothing was installed") {
		t.Errorf("stderr: %s", errOut.String())
	}
	if left, _ := os.ReadDir(so.UnitDir); len(left) != 0 {
		t.Fatalf("wrote units without systemd: %v", left)
	}
	cmd := "nice -n 10 ionice -c 3 /usr/local/bin/cht-backup %s --config /etc/cht-backup/cht-backup.env"
	for _, want := range []string{
		"30 2 * * * root CHT_BACKUP_LOCK_WAIT=3h " + strings.ReplaceAll(cmd, "%s", "backup"),
		"30 4 * * 0 root CHT_BACKUP_LOCK_WAIT=3h " + strings.ReplaceAll(cmd, "%s", "check") +
			"; [ $? -le 1 ] && CHT_BACKUP_LOCK_WAIT=3h " + strings.ReplaceAll(cmd, "%s", "prune"),
		"30 5 1 * * root CHT_BACKUP_LOCK_WAIT=3h " + strings.ReplaceAll(cmd, "%s", "verify"),
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("cron table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCronSpec(t *testing.T) {
	for _, tt := range []struct{ cal, want string }{
		{"*-*-* 02:30:00", "30 2 * * *"},
		{"*-*-* 2:05", "5 2 * * *"},
		{"Sun *-*-* 04:30:00", "30 4 * * 0"},
		{"Mon..Fri *-*-* 23:00", "0 23 * * 1-5"},
		{"Sat,Sun 01:00", "0 1 * * 6,0"},
		{"*-*-01 05:30:00", "30 5 1 * *"},
		{"daily", "0 0 * * *"},
		{"weekly", "0 0 * * 1"},
		{"monthly", "0 0 1 * *"},
		{"00:00", "0 0 * * *"},
		{"*-*-* 02:30:15", ""},            // seconds cron cannot express
		{"2025-*-* 02:30", ""},            // a year
		{"*-*-* 02:30 Europe/Berlin", ""}, // a time zone
		{"Funday 02:30", ""},
	} {
		got, ok := cronSpec(tt.cal)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("cronSpec(%q) = %q, %v; want %q", tt.cal, got, ok, tt.want)
		}
	}
	// A spec without a cron form is left for the user, commented out.
	_, so := scheduleFixture(t)
	so.BackupCalendar = "*-*-* 02:30 Europe/Berlin"
	if tab := cronTable(so); !strings.Contains(tab, "# M H DOM MON DOW root") {
		t.Errorf("cron table:\n%s", tab)
	}
}

// The command line: print writes all six units; schedule alone is a usage error.
func TestScheduleCommandLine(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.env")
	os.WriteFile(cfg, []byte("CHT_BACKUP_REPO=/mnt/usb/cht\n"), 0o600)
	cmd := exec.Command(binPath, "schedule", "print", "--config", cfg, "--state-dir", "/var/lib/cht-backup-print-test", "--binary", "/usr/local/bin/cht-backup", "--on-calendar", "03:00")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("schedule print: %v", err)
	}
	if n := strings.Count(string(out), "\n### "); n != 5 || !strings.Contains(string(out), "OnCalendar=03:00\n") || !strings.Contains(string(out), " -/mnt/usb/cht\n") {
		t.Fatalf("schedule print:\n%s", out)
	}
	if code := exec.Command(binPath, "schedule").Run(); code == nil || code.(*exec.ExitError).ExitCode() != exitUsage {
		t.Fatalf("schedule alone: %v", code)
	}
	if code := exec.Command(binPath, "schedule", "print", "extra", "--config", cfg).Run(); code == nil || code.(*exec.ExitError).ExitCode() != exitUsage {
		t.Fatalf("schedule print extra: %v", code)
	}
}

// The units' /tmp and /var/tmp are private (PrivateTmp=true): a repository, state dir or
// metrics file there would not be what the scheduled run sees, so install refuses it and says why.
func TestScheduleRefusesPathsUnderTmp(t *testing.T) {
	for _, tc := range []struct{ what, repo, state, metrics string }{
		{"repository /tmp/cht-repo", "/tmp/cht-repo", "/var/lib/cht-backup", ""},
		{"repository /var/tmp/x/r", "/var/tmp/x/r", "/var/lib/cht-backup", ""},
		{"the state dir", "/srv/r", "/tmp/state", ""},
		{"the metrics file", "/srv/r", "/var/lib/cht-backup", "/tmp/m/cht.prom"},
	} {
		o, so := scheduleFixture(t)
		o2, _ := jobOptions(t, tc.state, tc.repo)
		o2.MetricsFile = o.MetricsFile
		if tc.metrics != "" {
			o2.MetricsFile = tc.metrics
		}
		_, err := renderUnits(o2, so)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.what+" is under ") || !strings.Contains(err.Error(), "PrivateTmp") {
			t.Errorf("%s: %v", tc.what, err)
		}
	}
}

// nonTmpDir is a temporary directory outside /tmp and /var/tmp, which the units refuse.
func nonTmpDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/lib", "cht-backup-test-")
	if err != nil {
		t.Skipf("a directory outside /tmp is needed (run as root): %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
