package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, _ := strings.Cut(l, "=")
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

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

	svc := directives(byName["cht-backup-backup.service"])
	wantSvc := map[string][]string{
		"Unit.Description":                {"cht-backup: nightly backup of this CHT server"},
		"Unit.Wants":                      {"network-online.target"},
		"Unit.After":                      {"network-online.target docker.service"},
		"Service.Type":                    {"oneshot"},
		"Service.Environment":             {"HOME=/root"},
		"Service.ExecStart":               {"/usr/local/bin/cht-backup backup --config /etc/cht-backup/cht-backup.env --lock-wait 3h"},
		"Service.SuccessExitStatus":       {"1"},
		"Service.KillMode":                {"mixed"},
		"Service.TimeoutStopSec":          {"90"},
		"Service.TimeoutStartSec":         {"20h"},
		"Service.Nice":                    {"10"},
		"Service.IOSchedulingClass":       {"idle"},
		"Service.UMask":                   {"0077"},
		"Service.ProtectSystem":           {"strict"},
		"Service.ReadWritePaths":          {`/var/lib/cht-backup -/root/.cache/borg -/root/.config/borg -/var/lib/node_exporter/textfile_collector "-/mnt/usb disk/cht"`},
		"Service.ProtectHome":             {"read-only"},
		"Service.PrivateTmp":              {"true"},
		"Service.PrivateDevices":          {"true"},
		"Service.NoNewPrivileges":         {"true"},
		"Service.ProtectKernelTunables":   {"true"},
		"Service.ProtectKernelModules":    {"true"},
		"Service.ProtectKernelLogs":       {"true"},
		"Service.ProtectControlGroups":    {"true"},
		"Service.ProtectClock":            {"true"},
		"Service.ProtectHostname":         {"true"},
		"Service.RestrictRealtime":        {"true"},
		"Service.RestrictSUIDSGID":        {"true"},
		"Service.RestrictNamespaces":      {"true"},
		"Service.LockPersonality":         {"true"},
		"Service.SystemCallArchitectures": {"native"},
		"Service.SystemCallFilter":        {"@system-service"},
		"Service.SystemCallErrorNumber":   {"EPERM"},
		"Service.RestrictAddressFamilies": {"AF_UNIX AF_INET AF_INET6 AF_NETLINK"},
		"Service.CapabilityBoundingSet":   {"CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_CHOWN CAP_FSETID"},
	}
	if !reflect.DeepEqual(svc, wantSvc) {
		for k, v := range wantSvc {
			if !reflect.DeepEqual(svc[k], v) {
				t.Errorf("%s = %q, want %q", k, svc[k], v)
			}
		}
		for k, v := range svc {
			if _, ok := wantSvc[k]; !ok {
				t.Errorf("unexpected %s = %q", k, v)
			}
		}
	}

	wantTimer := `# cht-backup-backup.timer: nightly backup. Written by ` + "`cht-backup schedule install`" + ` (cht-backup ` + version + `).
[Unit]
Description=Schedule of cht-backup-backup.service: nightly backup

[Timer]
OnCalendar=*-*-* 01:15:00
# A run missed while the server was off starts soon after it comes back.
Persistent=true
# Spread the start so that many CHT servers do not hit one backup server at the same second.
RandomizedDelaySec=1800
Unit=cht-backup-backup.service

[Install]
WantedBy=timers.target
`
	if got := byName["cht-backup-backup.timer"]; got != wantTimer {
		t.Errorf("backup timer:\n%s\nwant:\n%s", got, wantTimer)
	}
	for job, cal := range map[string]string{"check": "Sun *-*-* 04:30:00", "verify": "*-*-01 05:30:00"} {
		tm := directives(byName["cht-backup-"+job+".timer"])
		if tm["Timer.OnCalendar"][0] != cal || tm["Timer.Persistent"][0] != "true" || tm["Timer.Unit"][0] != "cht-backup-"+job+".service" {
			t.Errorf("%s timer: %v", job, tm)
		}
		sv := directives(byName["cht-backup-"+job+".service"])
		if sv["Service.ExecStart"][0] != "/usr/local/bin/cht-backup "+job+" --config /etc/cht-backup/cht-backup.env --lock-wait 3h" {
			t.Errorf("%s ExecStart: %q", job, sv["Service.ExecStart"])
		}
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
