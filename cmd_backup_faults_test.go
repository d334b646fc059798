package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/ssh/sshtest"
	"github.com/cht-backup/cht-backup/state"
)

// The failure matrix of a backup: each fault is injected with real processes, a tmpfs or a socket
// that never answers, and each must end with nothing lost: the archives already there pass
// `borg check`, the CHT files are unchanged, staging is gone, the host lock is free (the next run
// starts at once), the outcome is recorded, and one line says what to do.

// faultCase is a CHT host whose repository already holds one good archive, with the hashes of
// every CHT file taken before the fault.
type faultCase struct {
	w      *world
	h      *chtHost
	repo   string
	hashes map[string]string
	start  time.Time
	first  string // the archive of the backup made before any fault
}

func newFaultCase(t *testing.T, opts ...sourcestest.Option) *faultCase {
	t.Helper()
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly, opts...)
	w.mustInit(t, w.remoteRepo())
	r := w.run(w.backupArgs(h, "--json")...)
	if r.code != 0 {
		t.Fatalf("first backup:\n%s", r)
	}
	return &faultCase{w: w, h: h, repo: w.remoteRepo(), first: decodeReport(t, r).Archive, hashes: hashTree(t, h.tree.Root), start: time.Now()}
}

// hashTree is the sha256 of every regular file under root, and the target of every symlink.
func hashTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[p] = "link:" + target
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			out[p] = hex.EncodeToString(s[:])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("hashing %s: %v", root, err)
	}
	return out
}

type lostCheck struct {
	code        int
	notRecorded bool // recorded elsewhere, or not at all: the state disk was full
	stateFull   bool // the state disk is full: the lock probe could not write either; the caller frees space and runs again
}

// assertNothingLost checks what every fault must leave behind.
func (f *faultCase) assertNothingLost(t *testing.T, r result, want lostCheck) {
	t.Helper()
	if r.code != want.code {
		t.Fatalf("want exit %d:\n%s", want.code, r)
	}
	if want.code >= 2 {
		if n := len(lines(r.stderr, "what to do:")); n != 1 {
			t.Errorf("want exactly one what-to-do line, got %d:\n%s", n, r)
		}
	}
	if out, err := runWithPassphrase(f.w, []string{"borg", "check", f.repo}); err != nil {
		t.Errorf("the repository fails borg check after the fault: %v\n%s", err, out)
	}
	if names := archiveNames(t, f.w, f.repo); len(names) == 0 {
		t.Error("the archive made before the fault is gone")
	}
	after := hashTree(t, f.h.tree.Root)
	for p, sum := range f.hashes {
		if after[p] != sum {
			t.Errorf("CHT file changed by the run: %s", p)
		}
	}
	if st, _ := filepath.Glob(filepath.Join(f.w.stateDir, "staging", "*")); len(st) != 0 {
		t.Errorf("staging left behind: %v", st)
	}
	if want.stateFull {
		return
	}
	lock, err := state.Acquire(context.Background(), f.w.stateDir, "probe", 0)
	if err != nil {
		t.Errorf("the host lock is not free after the run: %v", err)
	} else {
		lock.Release()
	}
	if want.notRecorded {
		return
	}
	sf, err := state.Load(f.w.stateDir)
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	e := sf.Find(state.JobBackup, f.repo)
	if e == nil || e.LastRun.End.Before(f.start) {
		t.Fatalf("the run's outcome is not recorded: %+v", e)
	}
	if want.code >= 2 && e.LastRun.Succeeded() {
		t.Errorf("a failed run recorded as %s", e.LastRun.Status)
	}
}

// Bad access to the repository: wrong, world-readable or missing passphrase, unknown or changed
// host key, a missing repository, a server that is down.
func TestBackupFaultsOfAccess(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(t *testing.T, f *faultCase, args []string) []string
		code  int
		wants []string
	}{
		{"wrong passphrase", func(t *testing.T, f *faultCase, a []string) []string {
			os.WriteFile(f.w.passFile, []byte("not the passphrase\n"), 0o600)
			return a
		}, 2, []string{"incorrect", "what to do: the passphrase does not open"}},
		{"world-readable passphrase file", func(t *testing.T, f *faultCase, a []string) []string {
			os.Chmod(f.w.passFile, 0o644)
			return a
		}, 3, []string{"0644", "chmod 600"}},
		{"missing passphrase file", func(t *testing.T, f *faultCase, a []string) []string {
			return replaceFlag(a, "--passphrase-file", filepath.Join(f.w.dir, "no-such-file"))
		}, 3, []string{"does not exist", "what to do:"}},
		{"unknown host key", func(t *testing.T, f *faultCase, a []string) []string {
			empty := filepath.Join(f.w.dir, "empty_known_hosts")
			os.WriteFile(empty, nil, 0o600)
			return replaceFlag(a, "--known-hosts", empty)
		}, 2, []string{"unknown", testEnv["SSH_HOST_KEY_FINGERPRINT"], "what to do: confirm"}},
		{"changed host key", func(t *testing.T, f *faultCase, a []string) []string {
			other := filepath.Join(f.w.dir, "other_key")
			if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v %s", err, out)
			}
			pub, _ := os.ReadFile(other + ".pub")
			fields := strings.Fields(string(pub))
			changed := filepath.Join(f.w.dir, "changed_known_hosts")
			os.WriteFile(changed, []byte(fmt.Sprintf("[%s]:%s %s %s\n", testEnv["SSH_HOST"], testEnv["SSH_PORT"], fields[0], fields[1])), 0o600)
			return replaceFlag(a, "--known-hosts", changed)
		}, 2, []string{"CHANGED", "what to do:"}},
		{"missing repository", func(t *testing.T, f *faultCase, a []string) []string {
			return replaceFlag(a, "--repo", f.repo+"-never-made")
		}, 2, []string{"what to do: create the repository first with `cht-backup init`"}},
		{"server down", func(t *testing.T, f *faultCase, a []string) []string {
			// --retries 0: a connection failure is otherwise retried for minutes.
			return append(replaceFlag(a, "--repo", strings.Replace(f.repo, ":"+testEnv["SSH_PORT"]+"/", fmt.Sprintf(":%d/", sshtest.ClosedPort(t)), 1)), "--retries", "0")
		}, 2, []string{"cannot reach", "what to do:"}},
	}
	// One host and repository for every case: each fault leaves them as they were, which is
	// what the cases assert, and the matrix stays fast.
	f := newFaultCase(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.start = time.Now()
			args := tt.edit(t, f, f.w.backupArgs(f.h))
			r := f.w.run(args...)
			for _, want := range tt.wants {
				if !strings.Contains(r.stdout+r.stderr, want) {
					t.Errorf("output lacks %q:\n%s", want, r)
				}
			}
			os.WriteFile(f.w.passFile, []byte(f.w.passphrase+"\n"), 0o600)
			os.Chmod(f.w.passFile, 0o600)
			check := lostCheck{code: tt.code}
			if tt.name == "missing repository" || tt.name == "server down" {
				// The outcome is recorded under the repository the run was given.
				f.repo = replaceFlagValue(args, "--repo")
				if r.code != tt.code {
					t.Fatalf("want exit %d:\n%s", tt.code, r)
				}
				sf, _ := state.Load(f.w.stateDir)
				if e := sf.Find(state.JobBackup, f.repo); e == nil || e.LastRun.Succeeded() {
					t.Fatalf("outcome not recorded as failed: %+v", e)
				}
				f.repo = f.w.remoteRepo()
				check.notRecorded = true // recorded above, under the other name
			}
			f.assertNothingLost(t, r, check)
			if names := archiveNames(t, f.w, f.repo); len(names) != 1 {
				t.Errorf("a failed run added archives: %v", names)
			}
		})
	}
}

func replaceFlagValue(args []string, flag string) string {
	for i := range args {
		if args[i] == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// A server that is down when the run starts and comes back while it waits to retry: the run
// retries, then backs up. The server is reached through a proxy this test opens and closes.
func TestBackupServerDownThenBack(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	p, repo, common := proxiedRepo(t, w, testEnv["SSH_SHELL_KEY"])
	p.down()

	cmd := w.command(append([]string{"backup", "--repo", repo, "--cht-dir", h.tree.Root, "--retries", "3", "--retry-wait", "1s"}, common...)...)
	var stdout bytes.Buffer
	stderr := &lineWatch{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr.waitFor(t, "retry 1 of 3", 60*time.Second)
	p.up(t)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("want the retry to back up once the server is back, exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	// Listed through the proxy (plain borg here would check the server's key under port 2222).
	l := w.run(append([]string{"archives", "--json", "--repo", repo}, common...)...)
	var list []Archive
	if err := json.Unmarshal([]byte(l.stdout), &list); l.code != 0 || err != nil || len(list) != 1 || list[0].Checkpoint {
		t.Fatalf("want one complete archive:\n%s", l)
	}
}

// proxiedRepo makes a repository on the test sshd reached through a new proxy, with init run
// through it; common are the flags (key, known_hosts for the proxy's port) that reach it.
func proxiedRepo(t *testing.T, w *world, key string) (p *proxy, repo string, common []string) {
	t.Helper()
	p = newProxy(t, net.JoinHostPort(testEnv["SSH_HOST"], testEnv["SSH_PORT"]))
	kh := filepath.Join(w.dir, "proxy_known_hosts")
	orig, err := os.ReadFile(testEnv["SSH_KNOWN_HOSTS"])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, bytes.ReplaceAll(orig, []byte("]:"+testEnv["SSH_PORT"]+" "), []byte("]:"+strconv.Itoa(p.port)+" ")), 0o600); err != nil {
		t.Fatal(err)
	}
	repo = strings.Replace(w.remoteRepo(), ":"+testEnv["SSH_PORT"]+"/", fmt.Sprintf(":%d/", p.port), 1)
	common = replaceFlag(w.common(key), "--known-hosts", kh)
	if r := w.run(append([]string{"init", "--repo", repo}, common...)...); r.code != 0 {
		t.Fatalf("init through the proxy:\n%s", r)
	}
	return p, repo, common
}

// proxy forwards TCP connections to a backend while up; while down its port refuses them.
type proxy struct {
	backend  string
	port     int
	mu       sync.Mutex
	l        net.Listener
	upstream []int // local ports of the connections to the backend, in order
	// hold, when set before the first connection, keeps that connection from the backend until
	// a second one comes, or for the given time at most; overlapped says a second one came.
	hold       time.Duration
	accepted   int
	second     chan struct{}
	overlapped bool
}

func newProxy(t *testing.T, backend string) *proxy {
	l, err := listenBelowEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{backend: backend, port: l.Addr().(*net.TCPAddr).Port}
	p.serve(l)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.accepted++
			n, hold := p.accepted, p.hold
			if n == 1 && hold > 0 {
				p.second = make(chan struct{})
			}
			if n == 2 && p.second != nil {
				close(p.second)
			}
			second := p.second
			p.mu.Unlock()
			go func() {
				defer c.Close()
				if n == 1 && hold > 0 {
					select {
					case <-second:
						p.mu.Lock()
						p.overlapped = true
						p.mu.Unlock()
					case <-time.After(hold):
					}
				}
				b, err := net.Dial("tcp", p.backend)
				if err != nil {
					return
				}
				defer b.Close()
				p.mu.Lock()
				p.upstream = append(p.upstream, b.LocalAddr().(*net.TCPAddr).Port)
				p.mu.Unlock()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
}

// takeUpstream returns the ports of the connections made to the backend since the last call.
func (p *proxy) takeUpstream() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ports := p.upstream
	p.upstream = nil
	return ports
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
}

// listenBelowEphemeral listens on a free port of 127.0.0.1 below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768-60999 by default). A proxy that goes down and comes back
// on its port must find it free: a port of that range could meanwhile be the local end of any
// outgoing connection of a test running in parallel. Where the range leaves no room below it,
// the kernel picks the port.
func listenBelowEphemeral() (net.Listener, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low < 11024 {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	var err error
	for range 200 {
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", low-10000+mrand.IntN(10000))); err == nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no free port in %d-%d: %v", low-10000, low-1, err)
}

func (p *proxy) up(t *testing.T) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
	if err != nil {
		t.Fatalf("reopening the proxy port: %v", err)
	}
	p.serve(l)
}

// lineWatch collects a process's output and lets a test wait for a line, with a deadline.
type lineWatch struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineWatch) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lineWatch) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lineWatch) waitFor(t *testing.T, sub string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(l.String(), sub) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s:\n%s", sub, within, l.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runningBackup is a backup started in the background, for faults injected while it runs.
type runningBackup struct {
	cmd            *exec.Cmd
	borgPid        int
	stdout, stderr *lineWatch
	stop           chan struct{}
	leak           chan string
	waited         bool
}

// startBackup starts a backup and returns once borg create runs. While the backup runs, every
// process's argv and environment are watched for the passphrase, as w.run does.
func (f *faultCase) startBackup(t *testing.T, extra ...string) *runningBackup {
	t.Helper()
	b := &runningBackup{cmd: f.w.command(f.w.backupArgs(f.h, extra...)...), stdout: &lineWatch{}, stderr: &lineWatch{},
		stop: make(chan struct{}), leak: make(chan string, 1)}
	b.cmd.Stdout, b.cmd.Stderr = b.stdout, b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go watchProcs(f.w.passphrase, pidsNow(), b.stop, b.leak)
	t.Cleanup(func() {
		if !b.waited {
			b.cmd.Process.Kill()
			b.wait(t)
		}
	})
	waitUntil(t, 60*time.Second, "borg create to start", func() bool {
		b.borgPid = descendant(b.cmd.Process.Pid, func(argv []string) bool {
			return len(argv) > 2 && strings.HasSuffix(argv[1], "borg") && argv[2] == "create"
		})
		return b.borgPid > 0
	})
	return b
}

// wait waits for the backup to end and stops watching for the passphrase before the test's own
// borg calls (which do hold it in their environment) start.
func (b *runningBackup) wait(t *testing.T) result {
	t.Helper()
	b.cmd.Wait()
	b.waited = true
	close(b.stop)
	if where := <-b.leak; where != "" {
		t.Errorf("passphrase visible in %s while the backup ran", where)
	}
	return result{stdout: b.stdout.String(), stderr: b.stderr.String(), code: b.cmd.ProcessState.ExitCode()}
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// descendant finds a process below pid whose argv matches.
func descendant(pid int, match func(argv []string) bool) int {
	kids := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		child, _ := strconv.Atoi(filepath.Base(d))
		kids[ppid] = append(kids[ppid], child)
	}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range kids[p] {
			if match(argvOf(c)) {
				return c
			}
			queue = append(queue, c)
		}
	}
	return 0
}

func argvOf(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return !strings.Contains(string(b), ") Z ")
}

// SIGINT, SIGTERM or SIGHUP (the admin's SSH session drops) mid-backup: borg is stopped cleanly,
// exit 130, nothing lost, and no complete-looking archive is left.
func TestBackupSignalledMidRun(t *testing.T) {
	f := newFaultCase(t, func(o *sourcestest.Options) { o.FileSize = 8 << 20 })
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			f.start = time.Now()
			b := f.startBackup(t)
			b.cmd.Process.Signal(sig)
			r := b.wait(t)
			f.assertNothingLost(t, r, lostCheck{code: 130})
			names := archiveNames(t, f.w, f.repo)
			for _, n := range names {
				if n != f.first && !strings.Contains(n, ".checkpoint") {
					t.Fatalf("an interrupted backup left a complete-looking archive %q (the archives: %q; the first backup's: %q)", n, names, f.first)
				}
			}
		})
	}
}

// SIGKILL mid-backup: borg dies with the tool (parent-death signal) and lets go of the
// repository; the next run takes over the lock and the staging, and backs up.
func TestBackupKilledThenNextRun(t *testing.T) {
	f := newFaultCase(t, func(o *sourcestest.Options) { o.FileSize = 8 << 20 })
	b := f.startBackup(t)
	borgPid := b.borgPid
	b.cmd.Process.Kill()
	b.wait(t)
	waitUntil(t, 30*time.Second, "borg to end with its parent", func() bool { return !alive(borgPid) })
	r := f.w.run(f.w.backupArgs(f.h, "--lock-wait", "0s", "--repo-lock-wait", "30")...)
	if r.code != 0 || !strings.Contains(r.stderr, "took over this host's lock") || !strings.Contains(r.stderr, "removed staging left by an earlier run") {
		t.Fatalf("the run after a SIGKILL:\n%s", r)
	}
	f.assertNothingLost(t, r, lostCheck{code: 0})
}

// The connection to the backup server drops mid-create: the client's ssh, the server's borg serve
// or the sshd session is killed. The run retries, reports no per-file noise, and backs up.
func TestBackupConnectionDroppedMidCreate(t *testing.T) {
	f := newFaultCase(t, func(o *sourcestest.Options) { o.FileSize = 8 << 20 })
	wantComplete := 1
	for _, victim := range []string{"client ssh", "borg serve", "sshd session"} {
		t.Run(victim, func(t *testing.T) {
			f.start = time.Now()
			time.Sleep(1100 * time.Millisecond) // a new archive name
			wantComplete++
			b := f.startBackup(t, "--retry-wait", "1s")
			borgPid := b.borgPid
			var sshPid int
			waitUntil(t, 30*time.Second, "borg's ssh", func() bool {
				sshPid = descendant(borgPid, func(argv []string) bool { return len(argv) > 0 && filepath.Base(argv[0]) == "ssh" })
				return sshPid > 0
			})
			target := sshPid
			if victim != "client ssh" {
				serve := serverSide(t, sshPid)
				target = serve
				if victim == "sshd session" {
					target = parentOf(serve)
					if !strings.HasPrefix(strings.Join(argvOf(target), " "), "sshd: ") {
						t.Fatalf("the parent of borg serve is not its sshd session: %v", argvOf(target))
					}
				}
			}
			if target <= 1 {
				t.Fatalf("no process to kill for %s", victim)
			}
			syscall.Kill(target, syscall.SIGKILL)
			r := b.wait(t)
			if !strings.Contains(r.stderr, "retry 1 of") {
				t.Errorf("the dropped connection was not retried:\n%s", r)
			}
			if strings.Contains(r.stdout+r.stderr, "Broken pipe") {
				t.Errorf("per-file connection noise reported:\n%s", r)
			}
			f.assertNothingLost(t, r, lostCheck{code: 0})
			if st, _ := os.ReadFile(state.Path(f.w.stateDir)); bytes.Contains(st, []byte("Broken pipe")) {
				t.Errorf("state.json holds connection noise:\n%s", st)
			}
			complete := 0
			for _, n := range archiveNames(t, f.w, f.repo) {
				if !strings.Contains(n, ".checkpoint") {
					complete++
				}
			}
			if complete != wantComplete {
				t.Errorf("want %d complete archives (the earlier ones and the retried one), got %v", wantComplete, archiveNames(t, f.w, f.repo))
			}
		})
	}
}

// serverSide finds the test server's borg serve that talks to the client ssh with pid sshPid: its
// SSH_CLIENT names the client's source port.
func serverSide(t *testing.T, sshPid int) int {
	t.Helper()
	var serve int
	waitUntil(t, 30*time.Second, "the server's borg serve", func() bool {
		port := localPort(sshPid)
		if port == "" {
			return false
		}
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			env, err := os.ReadFile(filepath.Join(d, "environ"))
			if err != nil || !bytes.Contains(env, []byte("SSH_CLIENT="+testEnv["SSH_HOST"]+" "+port+" ")) {
				continue
			}
			argv := argvOf(atoi(filepath.Base(d)))
			if strings.Contains(strings.Join(argv, " "), "borg serve") || (len(argv) > 2 && strings.HasSuffix(argv[1], "borg") && argv[2] == "serve") {
				serve = atoi(filepath.Base(d))
				return true
			}
		}
		return false
	})
	return serve
}

// localPort is the source port of the TCP connection a process holds, from ss.
func localPort(pid int) string {
	out, _ := exec.Command("ss", "-tnpH").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, fmt.Sprintf("pid=%d,", pid)) {
			f := strings.Fields(l)
			if len(f) >= 4 {
				return f[3][strings.LastIndexByte(f[3], ':')+1:]
			}
		}
	}
	return ""
}

func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 1 {
			return atoi(f[1])
		}
	}
	return 0
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// Docker down (a dead socket), hung (a socket that accepts and never answers) or a container
// missing: CouchDB's data, .env and compose are still archived; the run ends partial (exit 2),
// the manifest and the state say what is missing and why, status shows "partial".
func TestBackupDegradesWithoutDocker(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *faultCase) []string
		why   string
	}{
		{"docker down", func(t *testing.T, f *faultCase) []string {
			f.w.env = append(f.w.env, "DOCKER_HOST=unix://"+filepath.Join(f.w.dir, "no-docker.sock"))
			return nil
		}, "cannot reach the Docker engine"},
		{"docker hung", func(t *testing.T, f *faultCase) []string {
			sock := filepath.Join(f.w.dir, "hung-docker.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			conns := make(chan net.Conn, 64)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						close(conns)
						return
					}
					conns <- c // never answered
				}
			}()
			t.Cleanup(func() {
				l.Close()
				for c := range conns {
					c.Close()
				}
			})
			f.w.env = append(f.w.env, "DOCKER_HOST=unix://"+sock)
			return []string{"--docker-timeout", "2s"}
		}, "did not answer within 2s"},
		{"container missing", func(t *testing.T, f *faultCase) []string {
			f.h.containers.Remove(t, f.h.containers.Nginx)
			return nil
		}, "no container found for the nginx service"},
	}
	// One host for the three cases, the container removed last: each run adds one partial archive.
	f := newFaultCase(t)
	env := append([]string{}, f.w.env...)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.w.env = append([]string{}, env...)
			f.start = time.Now()
			extra := tt.setup(t, f)
			start := time.Now()
			r := f.w.run(f.w.backupArgs(f.h, extra...)...)
			if d := time.Since(start); d > 90*time.Second {
				t.Errorf("the run took %s: a Docker call without a deadline?", d)
			}
			if !strings.Contains(r.stdout, "MISSING") || !strings.Contains(r.stdout, tt.why) || !strings.Contains(r.stdout, "PARTIAL") || !strings.Contains(r.stderr, "backup partial") {
				t.Fatalf("the run must say the archive is partial and why:\n%s", r)
			}
			if dockerGone := tt.name != "container missing"; dockerGone && (!strings.Contains(r.stdout, "note: Docker could not be reached") || strings.Contains(r.stdout, "not used by this backup")) {
				t.Errorf("the note must say Docker could not be reached, not that it is not used:\n%s", r)
			}
			f.assertNothingLost(t, r, lostCheck{code: 2})
			names := archiveNames(t, f.w, f.repo)
			if len(names) != 2+i {
				t.Fatalf("the partial archive must be written: %v", names)
			}
			last := names[len(names)-1]
			paths := strings.Join(archivePaths(t, f.w, f.repo, last), "\n")
			for _, want := range []string{
				strings.TrimPrefix(filepath.Join(f.h.tree.CouchDBData, "shards"), "/"),
				strings.TrimPrefix(f.h.tree.EnvFile, "/"),
				strings.TrimPrefix(f.h.tree.ComposeFiles[0], "/"),
			} {
				if !strings.Contains(paths, want) {
					t.Errorf("the partial archive lacks %s", want)
				}
			}
			dir := plainExtract(t, f.w, f.repo, last)
			manifest, _ := os.ReadFile(filepath.Join(dir, "cht-backup", "manifest.json"))
			if !bytes.Contains(manifest, []byte(`"missing"`)) || !bytes.Contains(manifest, []byte(`"part": "tls"`)) {
				t.Errorf("the manifest does not record what is missing:\n%s", manifest)
			}
			sf, _ := state.Load(f.w.stateDir)
			if e := sf.Find(state.JobBackup, f.repo); e == nil || e.LastRun.Status != state.StatusPartial || len(e.LastRun.Missing) == 0 {
				t.Errorf("state: %+v", e)
			}
			metrics, _ := os.ReadFile(filepath.Join(f.w.stateDir, "metrics", "cht_backup.prom"))
			if !strings.Contains(string(metrics), fmt.Sprintf(`cht_backup_last_run_partial{job="backup",repository="%s"} 1`, f.repo)) {
				t.Errorf("metrics do not show the partial run:\n%s", metrics)
			}
			s := f.w.run(append([]string{"status", "--repo", f.repo}, f.w.common(testEnv["SSH_SHELL_KEY"])...)...)
			if s.code != 1 || !strings.Contains(s.stdout, "partial") {
				t.Errorf("status after a partial backup:\n%s", s)
			}
		})
	}
}

// Files borg cannot read (permission denied, an I/O error) fail that archive: exit 2, state
// failed with their count, metrics and status tell it from a benign warning. Real faults: a
// write-only sysctl file (EACCES even for root) and a process's /proc/PID/mem (EIO at offset 0),
// bind-mounted into CouchDB's data directory.
func TestBackupUnreadableFilesFailTheArchive(t *testing.T) {
	f := newFaultCase(t)
	dir := filepath.Join(f.h.tree.CouchDBData, "shards", f.h.tree.ShardRanges[0])
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	eacces, eio := filepath.Join(dir, "eacces.1700000000.couch"), filepath.Join(dir, "eio.1700000000.couch")
	for src, dst := range map[string]string{"/proc/sys/vm/compact_memory": eacces, fmt.Sprintf("/proc/%d/mem", sleeper.Process.Pid): eio} {
		os.WriteFile(dst, nil, 0o600)
		if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
			t.Skipf("SKIPPED: cannot bind-mount %s to make an unreadable file (%v: %s)", src, err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dst).Run() })
	}
	f.hashes = hashTreeTolerant(t, f.h.tree.Root, []string{eacces, eio})
	r := f.w.run(f.w.backupArgs(f.h)...)
	for _, want := range []string{"2 files could not be read", strings.TrimPrefix(eacces, "/"), strings.TrimPrefix(eio, "/"), "Permission denied", "Input/output error", "what to do: check the file named"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "the archive is complete") {
		t.Errorf("an archive lacking files called complete:\n%s", r)
	}
	exec.Command("umount", eacces).Run()
	exec.Command("umount", eio).Run()
	f.hashes = hashTreeTolerant(t, f.h.tree.Root, []string{eacces, eio})
	f.assertNothingLost(t, r, lostCheck{code: 2})
	sf, _ := state.Load(f.w.stateDir)
	e := sf.Find(state.JobBackup, f.repo)
	if e.LastRun.Status != state.StatusFailed || e.LastRun.Unreadable != 2 || e.LastRun.ExitCode != 2 {
		t.Errorf("state: %+v", e.LastRun)
	}
	metrics, _ := os.ReadFile(filepath.Join(f.w.stateDir, "metrics", "cht_backup.prom"))
	for _, want := range []string{
		fmt.Sprintf(`cht_backup_last_run_unreadable_files{job="backup",repository="%s"} 2`, f.repo),
		fmt.Sprintf(`cht_backup_last_run_success{job="backup",repository="%s"} 0`, f.repo),
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	s := f.w.run(append([]string{"status", "--repo", f.repo}, f.w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if s.code != 1 || !strings.Contains(s.stdout, "could not be read") {
		t.Errorf("status after unreadable files:\n%s", s)
	}
}

// hashTreeTolerant hashes like hashTree but leaves out the given paths (fault files).
func hashTreeTolerant(t *testing.T, root string, skip []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		for _, s := range skip {
			if p == s {
				return nil
			}
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err == nil {
				s := sha256.Sum256(b)
				out[p] = hex.EncodeToString(s[:])
			}
		}
		return nil
	})
	return out
}

// The host's own files are broken: a malformed .env, a COUCHDB_DATA that is a symlink loop.
// Each fails with one line naming the problem; no .env value is shown; nothing is lost.
func TestBackupFaultsOfTheHost(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(f *faultCase)
		wants  []string
	}{
		{"malformed .env", func(f *faultCase) {
			b, _ := os.ReadFile(f.h.tree.EnvFile)
			os.WriteFile(f.h.tree.EnvFile, append(b, []byte("this is not a variable=x\n")...), 0o600)
		}, []string{"upgrade-service/.env", "line ", "expected KEY=VALUE", "fix that line"}},
		{"COUCHDB_DATA symlink loop", func(f *faultCase) {
			os.Rename(f.h.tree.CouchDBData, f.h.tree.CouchDBData+".real")
			os.Symlink(filepath.Base(f.h.tree.CouchDBData), f.h.tree.CouchDBData)
		}, []string{"symlink loop", "COUCHDB_DATA"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFaultCase(t)
			tt.break_(f)
			f.hashes = hashTreeTolerant(t, f.h.tree.Root, nil)
			r := f.w.run(f.w.backupArgs(f.h)...)
			for _, want := range tt.wants {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("output lacks %q:\n%s", want, r)
				}
			}
			if strings.Contains(r.stderr, "run as root") {
				t.Errorf("a wrong hint:\n%s", r)
			}
			for _, secret := range f.h.tree.SecretValues() {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Fatal("an .env value was printed")
				}
			}
			if tt.name == "COUCHDB_DATA symlink loop" {
				os.Remove(f.h.tree.CouchDBData)
				os.Rename(f.h.tree.CouchDBData+".real", f.h.tree.CouchDBData)
				f.hashes = hashTreeTolerant(t, f.h.tree.Root, nil)
			}
			f.assertNothingLost(t, r, lostCheck{code: 2})
		})
	}
}

// A symlinked .env: the archive holds its content (staged under cht-backup/resolved/), verify
// passes, and a plain borg extract finds the secrets.
func TestBackupSymlinkedEnvArchivesItsContent(t *testing.T) {
	f := newFaultCase(t)
	content, _ := os.ReadFile(f.h.tree.EnvFile)
	real := filepath.Join(f.w.dir, "real.env")
	os.WriteFile(real, content, 0o600)
	os.Remove(f.h.tree.EnvFile)
	os.Symlink(real, f.h.tree.EnvFile)
	f.hashes = hashTree(t, f.h.tree.Root)
	r := f.w.run(f.w.backupArgs(f.h, "--json")...)
	f.assertNothingLost(t, r, lostCheck{code: 0})
	name := decodeReport(t, r).Archive
	dir := plainExtract(t, f.w, f.repo, name)
	got, err := os.ReadFile(filepath.Join(dir, "cht-backup", "resolved", strings.TrimPrefix(f.h.tree.EnvFile, "/")))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the .env content is not in the archive: %v", err)
	}
	v := f.w.run(append([]string{"verify", name, "--repo", f.repo}, f.w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if v.code != 0 {
		t.Fatalf("verify of an archive of a symlinked .env:\n%s", v)
	}
}

// A full state disk (a small tmpfs) is named as such; once space is freed the next run backs up.
func TestBackupFullStateDisk(t *testing.T) {
	f := newFaultCase(t)
	mnt := filepath.Join(f.w.dir, "state-disk")
	os.MkdirAll(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot mount a small tmpfs to fill up (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	f.w.stateDir = mnt
	filler := filepath.Join(mnt, "filler")
	fh, _ := os.Create(filler)
	io.Copy(fh, io.LimitReader(zeroReader{}, 2<<20))
	fh.Close()
	r := f.w.run(f.w.backupArgs(f.h)...)
	if !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "is full: free space there") || strings.Contains(r.stderr, "permissions") {
		t.Errorf("a full state disk must be named as such:\n%s", r)
	}
	f.assertNothingLost(t, r, lostCheck{code: 2, notRecorded: true, stateFull: true})
	os.Remove(filler)
	// The lock was released: once space is freed the next run starts at once, and backs up.
	if r := f.w.run(f.w.backupArgs(f.h, "--lock-wait", "0s")...); r.code != 0 {
		t.Fatalf("once space is freed the backup runs:\n%s", r)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0
	}
	return len(p), nil
}
