package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/configfile"
)

// The scheduled jobs under a real systemd: a Debian 12 container with systemd as PID 1 (built
// once by scripts/test-systemd-image.sh), the built binary copied in, a local repository, and a
// CHT directory without Docker (the container parts are skipped in the config file).

// sdHost is one such container.
type sdHost struct {
	t    *testing.T
	name string
}

var sdSeq struct {
	sync.Mutex
	n int
}

func newSystemdHost(t *testing.T) *sdHost {
	t.Helper()
	needEnv(t)
	image, err := exec.Command("bash", "scripts/test-systemd-image.sh", "build").CombinedOutput()
	if err != nil {
		t.Fatalf("the systemd test image is missing and cannot be built: %v\n%s", err, image)
	}
	sdSeq.Lock()
	sdSeq.n++
	name := fmt.Sprintf("cht-backup-sd-%d-%d", os.Getpid(), sdSeq.n)
	sdSeq.Unlock()
	h := &sdHost{t: t, name: name}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	if out, err := exec.Command("bash", "scripts/test-systemd-image.sh", "run", name).CombinedOutput(); err != nil {
		t.Fatalf("starting systemd in a container: %v\n%s", err, out)
	}
	if out, err := exec.Command("docker", "cp", binPath, name+":/usr/local/bin/cht-backup").CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v\n%s", err, out)
	}
	return h
}

// sh runs a bash script in the container and returns its combined output and exit code.
func (h *sdHost) sh(script string) (string, int) {
	h.t.Helper()
	cmd := exec.Command("docker", "exec", "-i", h.name, "bash", "-c", script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("docker exec: %v", err)
	}
	return out.String(), code
}

// must runs a script that has to succeed.
func (h *sdHost) must(script string) string {
	h.t.Helper()
	out, code := h.sh(script)
	if code != 0 {
		h.t.Fatalf("in the container, exit %d:\n%s\n--- output\n%s", code, script, out)
	}
	return out
}

func (h *sdHost) writeFile(path, content string, mode os.FileMode) {
	h.t.Helper()
	cmd := exec.Command("docker", "exec", "-i", h.name, "bash", "-c", fmt.Sprintf("umask 077; cat > %s && chmod %o %s", path, mode, path))
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("writing %s: %v %s", path, err, out)
	}
}

// unitRun is how one start of a service ended.
type unitRun struct {
	Result     string // success, exit-code, ...
	Status     int    // ExecMainStatus
	Invocation string
	Journal    string // this invocation's lines as cht-backup wrote them
	Errors     string // this invocation's lines at priority err or worse
}

// start runs a service with systemctl start (which waits for a oneshot) and reads its result.
func (h *sdHost) start(unit string) unitRun {
	h.t.Helper()
	h.sh("systemctl start " + unit)
	return h.result(unit)
}

func (h *sdHost) result(unit string) unitRun {
	h.t.Helper()
	props := map[string]string{}
	for _, l := range strings.Split(h.must("systemctl show -p Result -p ExecMainStatus -p InvocationID "+unit), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			props[k] = v
		}
	}
	r := unitRun{Result: props["Result"], Invocation: props["InvocationID"]}
	fmt.Sscan(props["ExecMainStatus"], &r.Status)
	if r.Invocation != "" {
		h.sh("journalctl --sync")
		r.Journal = h.must("journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=" + r.Invocation + " SYSLOG_IDENTIFIER=cht-backup")
		r.Errors, _ = h.sh("journalctl --no-pager -o cat -p err _SYSTEMD_INVOCATION_ID=" + r.Invocation + " SYSLOG_IDENTIFIER=cht-backup")
	}
	return r
}

func (r unitRun) String() string {
	return fmt.Sprintf("result %s, status %d\n--- journal\n%s--- at err\n%s", r.Result, r.Status, r.Journal, r.Errors)
}

const (
	sdConfig = "/etc/cht-backup/cht-backup.env"
	sdRepo   = "/var/backups/cht-repo"
	// The container has no Docker: the container parts are left out by configuration.
	sdBaseConfig = "CHT_BACKUP_REPO=" + sdRepo + "\nCHT_BACKUP_PASSPHRASE_FILE=/etc/cht-backup/passphrase\nCHT_BACKUP_SKIP=tls,credentials\n"
)

func (h *sdHost) setUp() {
	h.t.Helper()
	h.must(`set -e
mkdir -p /etc/cht-backup /home/ubuntu/cht/compose /home/ubuntu/cht/upgrade-service /home/ubuntu/cht/couchdb/shards
echo "services: {}" > /home/ubuntu/cht/compose/cht-core.yml
printf 'COUCHDB_USER=admin\nCOUCHDB_PASSWORD=pw\n' > /home/ubuntu/cht/upgrade-service/.env
chmod 600 /home/ubuntu/cht/upgrade-service/.env
echo data > /home/ubuntu/cht/couchdb/shards/x.couch
(umask 077; echo "sd-test-passphrase" > /etc/cht-backup/passphrase)`)
	h.writeFile(sdConfig, sdBaseConfig, 0o600)
	h.must("cht-backup init")
}

func (h *sdHost) archives(repo string) []string {
	h.t.Helper()
	out := h.must("BORG_PASSCOMMAND='cat /etc/cht-backup/passphrase' borg list --short " + repo)
	return strings.Fields(out)
}

// count runs a script printing a number.
func (h *sdHost) count(script string) int {
	h.t.Helper()
	out, _ := h.sh(script)
	n := 0
	fmt.Sscan(strings.TrimSpace(out), &n)
	return n
}

// waitFor polls a shell condition until it holds.
func (h *sdHost) waitFor(what, cond string, limit time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, code := h.sh(cond); code == 0 {
			return
		}
		if time.Now().After(deadline) {
			out, _ := h.sh("systemctl list-units --all --no-pager 'cht-backup-*'; ps -ef")
			h.t.Fatalf("%s: not within %s\n%s", what, limit, out)
		}
		time.Sleep(time.Second)
	}
}

// holdHostLockByManualRun starts a manual backup that holds the host lock until release is
// called: the borg it finds first on its PATH waits for a file before it creates the archive.
func (h *sdHost) holdHostLockByManualRun() (release func() string) {
	h.t.Helper()
	h.must("mkdir -p /root/slow")
	h.writeFile("/root/slow/borg", "#!/bin/sh\ncase \" $* \" in *\" create \"*) while [ ! -e /root/release ]; do sleep 0.2; done;; esac\nexec /usr/bin/borg \"$@\"\n", 0o755)
	h.must(`rm -f /root/release /root/manual.out
(PATH=/root/slow:$PATH setsid cht-backup backup >/root/manual.out 2>&1; echo "exit $?" >>/root/manual.out) >/dev/null 2>&1 &`)
	h.waitFor("the manual run holds the host lock", "pgrep -f '^/bin/sh /root/slow/borg create' >/dev/null", 30*time.Second)
	return func() string {
		h.must("touch /root/release")
		h.waitFor("the manual run ends", "grep -q '^exit ' /root/manual.out", 60*time.Second)
		out, _ := h.sh("cat /root/manual.out")
		return out
	}
}

func TestScheduledJobsUnderSystemd(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	h := newSystemdHost(t)
	h.setUp()

	// Install: units written, timers enabled and waiting.
	out := h.must("cht-backup schedule install")
	for _, timer := range []string{"cht-backup-backup.timer", "cht-backup-check.timer", "cht-backup-verify.timer"} {
		if got := strings.TrimSpace(h.must("systemctl is-enabled " + timer + "; systemctl is-active " + timer)); got != "enabled\nactive" {
			t.Fatalf("%s: %q\n%s", timer, got, out)
		}
	}
	if u := h.must("cat /etc/systemd/system/cht-backup-backup.service"); regexp.MustCompile(`(?m)^EnvironmentFile=`).MatchString(u) || !strings.Contains(u, "--lock-wait 3h") {
		t.Fatalf("the unit must not read the config as EnvironmentFile= and must carry its lock wait:\n%s", u)
	}

	// Each service, started by systemctl, does its job.
	for _, svc := range []string{"cht-backup-backup.service", "cht-backup-check.service", "cht-backup-verify.service"} {
		r := h.start(svc)
		if r.Result != "success" || r.Status != 0 || r.Errors != "" {
			t.Fatalf("%s:\n%s", svc, r)
		}
	}
	if n := len(h.archives(sdRepo)); n != 1 {
		t.Fatalf("archives after the backup service: %d", n)
	}
	st := h.must("cht-backup status")
	for _, want := range []string{"last backup ok:", "last check:       ok", "last verify:      ok"} {
		if !strings.Contains(st, want) {
			t.Fatalf("status lacks %q:\n%s", want, st)
		}
	}

	t.Run("timer fires", func(t *testing.T) {
		h.t = t
		h.must("cht-backup schedule install --on-calendar '*:*:0/10' --randomized-delay 0s >/dev/null")
		before := len(h.archives(sdRepo))
		finished := h.count("journalctl -u cht-backup-backup.service -o cat | grep -c '^Finished cht-backup-backup.service'")
		h.waitFor("the backup timer starts the service", fmt.Sprintf("[ \"$(journalctl -u cht-backup-backup.service -o cat | grep -c '^Finished cht-backup-backup.service')\" -gt %d ]", finished), 3*time.Minute)
		if trig := h.must("systemctl show -p LastTriggerUSec --value cht-backup-backup.timer"); strings.TrimSpace(trig) == "n/a" || strings.TrimSpace(trig) == "" {
			t.Fatalf("the timer never triggered: %q", trig)
		}
		if after := len(h.archives(sdRepo)); after <= before {
			t.Fatalf("the timer fired but no archive was made (%d before, %d after)", before, after)
		}
		h.must("cht-backup schedule install >/dev/null")
		h.waitFor("no run in progress", "[ \"$(systemctl show -p ActiveState --value cht-backup-backup.service)\" != activating ]", time.Minute)
	})

	t.Run("config file cases", func(t *testing.T) {
		h.t = t
		// Every line systemd and cht-backup would read differently is refused, by hand and
		// under the timer alike, with its line number.
		cases := []struct{ name, line, reason string }{
			{"inline comment", "CHT_BACKUP_REPO=" + sdRepo + " # local copy", "comment"},
			{"backslash", `BORG_PASSCOMMAND=cat /etc/cht-backup/pass\word`, "backslash"},
			{"continuation line", "CHT_BACKUP_CHT_DIR=/home/ubuntu/\\\ncht", "backslash"},
			{"\\t in double quotes", `CHT_BACKUP_HEALTHCHECK_URL="http://127.0.0.1:9/\t"`, `\t in double quotes`},
			{"comment after closing quote", `CHT_BACKUP_REPO="` + sdRepo + `" # copy`, "comment follows the closing quote"},
		}
		for _, c := range cases {
			h.writeFile(sdConfig, sdBaseConfig+"# a comment\n"+c.line+"\n", 0o600)
			want := fmt.Sprintf("config file %s line 5: ", sdConfig)
			manual, code := h.sh("cht-backup backup")
			if code != exitUsage || !strings.Contains(manual, want) || !strings.Contains(manual, c.reason) {
				t.Errorf("%s: manual run, exit %d:\n%s", c.name, code, manual)
			}
			r := h.start("cht-backup-backup.service")
			if r.Result != "exit-code" || r.Status != exitUsage || !strings.Contains(r.Errors, want) || !strings.Contains(r.Errors, c.reason) {
				t.Errorf("%s: scheduled run:\n%s", c.name, r)
			}
		}
		// A failed scheduled run is visible in the journal at err, in status and in the metrics.
		if j := h.must("journalctl --no-pager -o cat -p err -u 'cht-backup-*'"); !strings.Contains(j, "cht-backup: error: config file "+sdConfig+" line 5") {
			t.Errorf("journalctl -p err -u 'cht-backup-*' does not show the failure:\n%s", j)
		}
		st, _ := h.sh("cht-backup status --config /dev/null")
		if !strings.Contains(st, "repository "+sdRepo) || !regexp.MustCompile(`last backup run: +failed`).MatchString(st) || !strings.Contains(st, "line 5") {
			t.Errorf("status does not show the refused config file:\n%s", st)
		}
		if m := h.must("cat /var/lib/cht-backup/metrics/cht_backup.prom"); !regexp.MustCompile(`(?m)^cht_backup_last_run_success\{[^}]*job="backup"[^}]*repository="` + sdRepo + `"[^}]*\} 0$`).MatchString(m) {
			t.Errorf("metrics do not show the failure:\n%s", m)
		}

		// A ; comment line is a comment for both; what cht-backup accepts, systemd reads alike.
		accepted := "; a systemd-style comment\nA1='single \\ quoted # not a comment'\nA2=\"dq \\\" \\\\ \\$ \\` \tend\"\nA3=pass#word\n  A4 =  spaced  \nA5=$HOME\nA6=\nA7=it's\n"
		f, err := configfile.Parse("probe", []byte(accepted))
		if err != nil {
			t.Fatalf("the accepted lines: %v", err)
		}
		h.writeFile("/etc/probe.env", accepted, 0o600)
		h.must(`printf '[Service]\nType=oneshot\nEnvironmentFile=/etc/probe.env\nExecStart=/usr/bin/env -0\nStandardOutput=file:/root/probe.out\n' > /etc/systemd/system/probe.service
systemctl daemon-reload && systemctl start probe.service`)
		sysd := map[string]string{}
		for _, kv := range strings.Split(h.must("cat /root/probe.out"), "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok && regexp.MustCompile(`^A\d$`).MatchString(k) {
				sysd[k] = v
			}
		}
		if !reflect.DeepEqual(sysd, f.Values) {
			t.Errorf("systemd and cht-backup read the file differently:\nsystemd    %q\ncht-backup %q", sysd, f.Values)
		}

		// The passphrase in a config file others can read is refused.
		h.writeFile(sdConfig, sdBaseConfig+"BORG_PASSPHRASE=sd-test-passphrase\n", 0o644)
		if r := h.start("cht-backup-backup.service"); r.Status != exitUsage || !strings.Contains(r.Errors, "has mode 0644") {
			t.Errorf("a world-readable passphrase:\n%s", r)
		}

		// A missing config file: cht-backup starts all the same and records the failure.
		h.must("rm -f " + sdConfig)
		r := h.start("cht-backup-backup.service")
		if r.Result != "exit-code" || r.Status != exitUsage || !strings.Contains(r.Errors, "cannot read config file "+sdConfig) {
			t.Errorf("missing config file:\n%s", r)
		}
		if s := h.must("cat /var/lib/cht-backup/state.json"); !strings.Contains(s, "cannot read config file") {
			t.Errorf("the missing config file is not recorded:\n%s", s)
		}
		h.writeFile(sdConfig, sdBaseConfig, 0o600)
		if r := h.start("cht-backup-backup.service"); r.Result != "success" {
			t.Fatalf("back to the good config:\n%s", r)
		}
	})

	t.Run("json log format", func(t *testing.T) {
		h.t = t
		h.writeFile(sdConfig, sdBaseConfig+"CHT_BACKUP_LOG_FORMAT=json\n", 0o600)
		r := h.start("cht-backup-backup.service")
		if r.Result != "success" {
			t.Fatalf("%s", r)
		}
		for _, l := range strings.Split(strings.TrimSpace(r.Journal), "\n") {
			if !strings.HasPrefix(l, "{\"level\":") {
				t.Errorf("not a JSON line in the journal: %q", l)
			}
		}
		h.writeFile(sdConfig, sdBaseConfig, 0o600)
	})

	t.Run("a local repository added after install", func(t *testing.T) {
		h.t = t
		h.must("mkdir -p /srv/usb && cht-backup init --repo /srv/usb/cht >/dev/null")
		h.writeFile(sdConfig, strings.Replace(sdBaseConfig, sdRepo, sdRepo+",/srv/usb/cht", 1), 0o600)
		r := h.start("cht-backup-backup.service")
		if r.Status != exitUsage || !strings.Contains(r.Errors, "/srv/usb/cht") || !strings.Contains(r.Errors, "run `cht-backup schedule install` again") {
			t.Fatalf("an uncovered repository must name the fix:\n%s", r)
		}
		if manual, code := h.sh("cht-backup preflight >/dev/null; cht-backup backup"); code != 0 || !strings.Contains(manual, "the scheduled runs will fail") {
			t.Errorf("a manual run must warn that the scheduled ones fail (exit %d):\n%s", code, manual)
		}
		h.must("cht-backup schedule install >/dev/null")
		if r := h.start("cht-backup-backup.service"); r.Result != "success" {
			t.Fatalf("after schedule install again:\n%s", r)
		}
		if out, code := h.sh("cht-backup schedule install --repo /tmp/cht-repo"); code != exitUsage || !strings.Contains(out, "PrivateTmp") {
			t.Errorf("a repository under /tmp must be refused at install (exit %d):\n%s", code, out)
		}
		h.writeFile(sdConfig, sdBaseConfig, 0o600)
		h.must("cht-backup schedule install >/dev/null")
	})

	t.Run("scheduled run waits for a manual run", func(t *testing.T) {
		h.t = t
		// The config's lock wait is for manual runs; the unit waits its own 3 h.
		h.writeFile(sdConfig, sdBaseConfig+"CHT_BACKUP_LOCK_WAIT=1s\n", 0o600)
		release := h.holdHostLockByManualRun()
		h.must("systemctl start --no-block cht-backup-backup.service")
		h.waitFor("the scheduled run waits", "journalctl -u cht-backup-backup.service -o cat | grep -q 'waiting up to 3h0m0s'", 30*time.Second)
		time.Sleep(2 * time.Second) // past the config's 1 s
		if state := strings.TrimSpace(h.must("systemctl show -p ActiveState --value cht-backup-backup.service")); state != "activating" {
			t.Fatalf("the scheduled run gave up waiting: %s", state)
		}
		if manual := release(); !strings.Contains(manual, "exit 0") {
			t.Fatalf("manual run:\n%s", manual)
		}
		h.waitFor("the scheduled run finishes", "! systemctl is-active -q cht-backup-backup.service && [ \"$(systemctl show -p ActiveState --value cht-backup-backup.service)\" = inactive ]", 2*time.Minute)
		if r := h.result("cht-backup-backup.service"); r.Result != "success" {
			t.Fatalf("after waiting:\n%s", r)
		}
		h.writeFile(sdConfig, sdBaseConfig, 0o600)
	})

	t.Run("remove with a job waiting", func(t *testing.T) {
		h.t = t
		// A failed unit first, so that remove has a failed state to reset.
		h.must("rm -f " + sdConfig)
		h.start("cht-backup-check.service")
		h.writeFile(sdConfig, sdBaseConfig, 0o600)
		before := len(h.archives(sdRepo))
		waiting := h.count("journalctl -u cht-backup-backup.service -o cat | grep -c 'waiting up to 3h0m0s'")
		release := h.holdHostLockByManualRun()
		h.must("systemctl start --no-block cht-backup-backup.service")
		h.waitFor("the scheduled run waits", fmt.Sprintf("[ \"$(journalctl -u cht-backup-backup.service -o cat | grep -c 'waiting up to 3h0m0s')\" -gt %d ]", waiting), 30*time.Second)
		out := h.must("cht-backup schedule remove")
		if !strings.Contains(out, "stopping cht-backup-backup.service") {
			t.Errorf("remove does not say it stops the waiting job:\n%s", out)
		}
		if listed := strings.TrimSpace(h.must("systemctl list-units --all --plain --no-legend 'cht-backup-*'")); listed != "" {
			t.Errorf("units still listed after remove:\n%s", listed)
		}
		if files := strings.TrimSpace(h.must("ls /etc/systemd/system/ | grep cht-backup || true")); files != "" {
			t.Errorf("unit files left: %s", files)
		}
		if manual := release(); !strings.Contains(manual, "exit 0") {
			t.Fatalf("manual run:\n%s", manual)
		}
		time.Sleep(2 * time.Second)
		if procs, _ := h.sh("pgrep -af 'cht-backup|borg'"); strings.TrimSpace(procs) != "" {
			t.Errorf("still running after remove:\n%s", procs)
		}
		if after := len(h.archives(sdRepo)); after != before+1 {
			t.Errorf("archives: %d before, %d after; only the manual run's may be new", before, after)
		}
	})
}
