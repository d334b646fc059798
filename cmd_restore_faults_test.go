package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/restore"
	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// restore --target keeps the copy private and never lands on live files: a symlink to the CHT
// dir is refused, a directory of another user is refused, an existing DIR is made 0700 and the
// restored .env is 0600 even when the host's was readable by others.
func TestRestoreTargetGuards(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	if err := os.Chmod(h.tree.EnvFile, 0o644); err != nil {
		t.Fatal(err)
	}
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	before := treeState(t, h.tree)

	link := filepath.Join(w.dir, "cht-link")
	if err := os.Symlink(h.tree.Root, link); err != nil {
		t.Fatal(err)
	}
	r := w.run(w.restoreArgs(h, "latest", "--target", link, "--force")...)
	if r.code != 3 || !strings.Contains(r.stderr, "live CHT directory") || len(lines(r.stderr, "what to do")) != 1 {
		t.Fatalf("a symlink to the CHT dir must be refused as the live CHT dir:\n%s", r)
	}
	if after := treeState(t, h.tree); !reflect.DeepEqual(after, before) {
		t.Fatal("a refused restore changed the CHT tree")
	}
	if aside, _ := filepath.Glob(filepath.Join(h.tree.Root, "*.before-restore-*")); len(aside) > 0 {
		t.Fatalf("a refused restore moved things aside: %v", aside)
	}

	theirs := filepath.Join(w.dir, "theirs")
	os.Mkdir(theirs, 0o755)
	os.Chown(theirs, 4321, 4321)
	r = w.run(w.restoreArgs(h, "latest", "--target", theirs)...)
	if r.code != 3 || !strings.Contains(r.stderr, "uid 4321") || len(lines(r.stderr, "what to do")) != 1 {
		t.Fatalf("a directory of another user must be refused:\n%s", r)
	}
	if entries, _ := os.ReadDir(theirs); len(entries) > 0 {
		t.Fatalf("the refused target was written to: %v", entries)
	}

	open := filepath.Join(w.dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	r = w.run(w.restoreArgs(h, "latest", "--target", open)...)
	if r.code != 0 {
		t.Fatalf("restore into an empty existing dir:\n%s", r)
	}
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o700 {
		t.Errorf("the target must be made 0700, is %v", fi.Mode().Perm())
	}
	env := filepath.Join(open, "upgrade-service", ".env")
	if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the restored .env must be 0600: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(env); string(b) != string(before[h.tree.EnvFile].body) {
		t.Errorf("the restored .env differs from the host's")
	}
}

// liveRun is a run of the binary that a test watches and signals while it runs.
type liveRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	stdout bytes.Buffer
	lineCh chan string
	done   chan struct{}
	leak   chan string
	stop   chan struct{}
}

func (w *world) start(t *testing.T, extraEnv []string, args ...string) *liveRun {
	t.Helper()
	cmd := w.command(args...)
	cmd.Env = append(append([]string{}, cmd.Env...), extraEnv...)
	lr := &liveRun{t: t, cmd: cmd, lineCh: make(chan string, 1000), done: make(chan struct{}), leak: make(chan string, 1), stop: make(chan struct{})}
	cmd.Stdout = &lr.stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	go watchProcs(w.passphrase, pidsNow(), lr.stop, lr.leak)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(lr.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lr.mu.Lock()
			lr.stderr.WriteString(sc.Text() + "\n")
			lr.mu.Unlock()
			select {
			case lr.lineCh <- sc.Text():
			default:
			}
		}
	}()
	return lr
}

// waitLine waits, up to a deadline, for a log line holding sub.
func (lr *liveRun) waitLine(sub string) {
	lr.t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case l := <-lr.lineCh:
			if strings.Contains(l, sub) {
				return
			}
		case <-lr.done:
			lr.t.Fatalf("the run ended before logging %q:\n%s", sub, lr.finish())
		case <-deadline:
			lr.cmd.Process.Kill()
			lr.t.Fatalf("no log line %q within 3 minutes:\n%s", sub, lr.finish())
		}
	}
}

// finish waits for the run to end and returns what it gave.
func (lr *liveRun) finish() result {
	lr.t.Helper()
	timer := time.AfterFunc(5*time.Minute, func() { lr.cmd.Process.Kill() })
	defer timer.Stop()
	<-lr.done
	err := lr.cmd.Wait()
	close(lr.stop)
	if where := <-lr.leak; where != "" {
		lr.t.Fatalf("passphrase visible in %s", where)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		lr.t.Fatal(err)
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return result{lr.stdout.String(), lr.stderr.String(), code}
}

// slowToStop replaces a fixture container by one with the same name, labels and volume that
// ignores its stop signal, so `docker stop` takes the whole timeout (secs) before the engine kills
// it: a stop that a test can interrupt. It returns the new container's id.
func slowToStop(t *testing.T, cli *client.Client, c sourcestest.TestContainer, secs int) string {
	return recreateContainer(t, cli, c, func(cfg *container.Config, _ *container.HostConfig) {
		cfg.StopSignal = "SIGUSR1" // the sleeper (a Go program) catches it and does nothing
		cfg.StopTimeout = &secs
	})
}

// recreateContainer replaces a test container by one of the same name, labels and mounts, as
// edit changes them, and starts it. It returns the new container's id.
func recreateContainer(t *testing.T, cli *client.Client, c sourcestest.TestContainer, edit func(*container.Config, *container.HostConfig)) string {
	t.Helper()
	ctx := context.Background()
	info, err := cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	cfg, hc := info.Config, &container.HostConfig{NetworkMode: "none", Mounts: info.HostConfig.Mounts}
	edit(cfg, hc)
	resp, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), resp.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return resp.ID
}

// SIGINT, SIGTERM and SIGHUP in the middle of an in-place restore, at each step: while borg
// extracts, while the engine stops CouchDB, between two renames, between two container starts.
// Each time: exit 130 and one line saying what to do; the report says what Docker says and where
// every moved file is; the printed way back returns the host exactly to the state before (files,
// and containers running as they were); scratch is gone, the lock is free, the outcome is recorded.
// At the end the repository passes `borg check` and a full restore goes through.
func TestRestoreInPlaceInterrupted(t *testing.T) {
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	cs := h.containers
	cli := cs.Client
	couchID := slowToStop(t, cli, cs.CouchDB, 3)
	// A leftover of the project that is not running: no restore may start it.
	leftover, err := cli.ContainerCreate(context.Background(), &container.Config{Image: mustInspect(t, cli, couchID).Config.Image, Cmd: []string{"/bin/sleeper"},
		Labels: map[string]string{"com.docker.compose.project": cs.Project, "com.docker.compose.service": "sentinel"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), leftover.ID, container.RemoveOptions{Force: true}) })
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	before := treeState(t, h.tree)
	ids := map[string]string{"couchdb": couchID, "nginx": cs.Nginx.ID, "leftover": leftover.ID}
	wantUp := map[string]bool{"couchdb": true, "nginx": true, "leftover": false}

	// The copy a restore killed outright (SIGKILL, power loss) left next to the data.
	stale := filepath.Join(filepath.Dir(h.tree.CouchDBData), ".cht-backup-restore-20200101T000000Z-00000000.pid4194305")
	os.MkdirAll(filepath.Join(stale, "archive"), 0o700)
	os.WriteFile(filepath.Join(stale, "archive", "phi.couch"), []byte("health records"), 0o600)

	type trigger func(t *testing.T, lr *liveRun)
	afterLog := func(sub string) trigger { return func(t *testing.T, lr *liveRun) { lr.waitLine(sub) } }
	// Every signal takes one path (main's signal context), so by default each step gets one signal
	// and each signal at least one step; CHT_BACKUP_TEST_ALL_SIGNALS=1 tries all three at every
	// step (about three times as long).
	cases := []struct {
		step    string
		hold    string
		trigger trigger
		changed bool // files moved or placed by the time of the signal
		signals []syscall.Signal
	}{
		{restore.StepExtract, "", afterLog("extracting"), false, []syscall.Signal{syscall.SIGHUP}},
		{restore.StepStop, "", nil, false, []syscall.Signal{syscall.SIGINT}},
		{restore.StepMove, "move", afterLog("test hold"), true, []syscall.Signal{syscall.SIGTERM}},
		{restore.StepStart, "start", afterLog("test hold"), true, []syscall.Signal{syscall.SIGHUP}},
	}
	for _, c := range cases {
		signals := c.signals
		if os.Getenv("CHT_BACKUP_TEST_ALL_SIGNALS") == "1" {
			signals = []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}
		}
		for _, sig := range signals {
			t.Run(strings.ReplaceAll(c.step, " ", "-")+"/"+sig.String(), func(t *testing.T) {
				var env []string
				if c.hold != "" {
					env = append(env, restore.TestHoldEnv+"="+c.hold)
				}
				var killed chan struct{}
				if c.trigger == nil { // subscribe before the run starts, or the event may pass unseen
					killed = make(chan struct{})
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					defer cancel()
					msgs, errs := cli.Events(ctx, eventsFilter(couchID, "kill"))
					go func() {
						select {
						case <-msgs:
							close(killed)
						case <-errs:
						}
					}()
				}
				lr := w.start(t, env, w.restoreArgs(h, "latest", "--in-place", "--yes", "--json")...)
				if c.trigger != nil {
					c.trigger(t, lr)
				} else {
					select {
					case <-killed:
					case <-time.After(3 * time.Minute):
						lr.cmd.Process.Kill()
						t.Fatalf("CouchDB's container was never stopped:\n%s", lr.finish())
					}
				}
				signalled := time.Now()
				if err := lr.cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				r := lr.finish()
				t.Logf("restore --in-place, %v at %q:\n%s", sig, c.step, r)
				if r.code != 130 || len(lines(r.stderr, "what to do:")) != 1 {
					t.Fatalf("want exit 130 and one line saying what to do:\n%s", r)
				}
				noSecrets(t, h, r)
				var res restore.InPlaceResult
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
					t.Fatalf("--json result: %v\n%s", err, r)
				}
				if res.OK || res.FailedStep != c.step {
					t.Fatalf("want the restore stopped at %q, got ok=%v at %q", c.step, res.OK, res.FailedStep)
				}

				// The report says what Docker says.
				for _, cn := range res.ContainersNow {
					if got := mustInspect(t, cli, cn.ID).State.Status; got != cn.State {
						t.Errorf("the report says %s is %s, Docker says %s", cn.Name, cn.State, got)
					}
				}
				if len(res.ContainersNow) != 3 {
					t.Errorf("the report names %d containers, want 3: %+v", len(res.ContainersNow), res.ContainersNow)
				}
				for _, s := range res.Stopped {
					if s.ID == leftover.ID {
						t.Errorf("the exited leftover is reported as stopped by the restore")
					}
				}
				if c.step == restore.StepExtract {
					if len(res.Recovery) != 0 || !strings.Contains(strings.Join(res.State, " "), "nothing on this host was changed") {
						t.Errorf("interrupted while extracting, nothing may have changed: %q %q", res.State, res.Recovery)
					}
				}
				if c.changed != (len(res.MovedAside) > 0) {
					t.Errorf("moved aside at the signal: %+v", res.MovedAside)
				}

				// The CHT files are as they were, or where the report says they went.
				for p, want := range before {
					if mv, rel, ok := movedBy(res.MovedAside, p); ok {
						sameState(t, "moved aside", want, filepath.Join(mv.To, rel))
					} else if !placedOver(res.Placed, p) {
						sameState(t, "untouched", want, p)
					}
				}

				// Scratch gone, stale scratch too; the lock free; the outcome recorded.
				if left, _ := filepath.Glob(filepath.Join(filepath.Dir(h.tree.CouchDBData), ".cht-backup-restore-*")); len(left) > 0 {
					t.Errorf("scratch left next to the CouchDB data: %v", left)
				}
				if left, _ := filepath.Glob(filepath.Join(w.stateDir, "restore", "*")); len(left) > 0 {
					t.Errorf("scratch left in the state dir: %v", left)
				}
				lock, err := state.Acquire(context.Background(), w.stateDir, "test", 0)
				if err != nil {
					t.Fatalf("the lock is still held: %v", err)
				}
				lock.Release()
				f, err := state.Load(w.stateDir)
				if err != nil {
					t.Fatal(err)
				}
				if e := f.Find(state.JobRestore, w.remoteRepo()); e == nil || e.LastRun.End.Before(signalled) || e.LastRun.ExitCode != 130 || e.LastRun.Status != state.StatusFailed {
					t.Errorf("the interrupted restore is not recorded: %+v", e)
				}

				// The way back, as printed, returns the host to the state before.
				for _, cmdline := range res.Recovery {
					if out, err := exec.Command("sh", "-c", cmdline).CombinedOutput(); err != nil {
						t.Fatalf("way back %q: %v\n%s", cmdline, err, out)
					}
				}
				for p, want := range before {
					sameState(t, "after the way back", want, p)
				}
				for name, id := range ids {
					if got := running(t, cli, id); got != wantUp[name] {
						t.Fatalf("after the way back %q, %s running=%v, want %v", res.Recovery, name, got, wantUp[name])
					}
				}
				checkContainerFiles(t, cs, cs.Nginx.ID, sourcestest.NginxPrivateDir)
				checkContainerFiles(t, cs, couchID, sourcestest.CouchDBLocalDDir)
			})
			if t.Failed() {
				return // the next case needs the host as it was
			}
		}
	}
	// Any job (here check) removes the copy a killed restore left, not only the next restore.
	os.MkdirAll(filepath.Join(stale, "archive"), 0o700)
	r := w.run(append([]string{"check", "--repo", w.remoteRepo(), "--cht-dir", h.tree.Root}, w.common(testEnv["SSH_SHELL_KEY"])...)...)
	if r.code != 0 {
		t.Fatalf("the repository must pass check after the interrupted restores:\n%s", r)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) || !strings.Contains(r.stderr, stale) {
		t.Errorf("check must remove (and name) the copy a killed restore left: %v\n%s", err, r)
	}

	// Then a whole restore of an archive made with --skip compose: the compose files stay where
	// they are (the archive has none to put back), the rest comes back, the containers the
	// restore stopped run again and the leftover stays as it was.
	if r := w.run(w.backupArgs(h, "--skip", "compose")...); r.code != 0 {
		t.Fatalf("backup --skip compose:\n%s", r)
	}
	compose := map[string][]byte{}
	for _, f := range h.tree.ComposeFiles {
		b := append(append([]byte{}, before[f].body...), "# changed after the backup\n"...)
		os.WriteFile(f, b, 0o644)
		compose[f] = b
	}
	os.WriteFile(h.tree.EnvFile, []byte("COUCHDB_PASSWORD=changed-after-the-backup\n"), 0o600)
	r = w.run(w.restoreArgs(h, "latest", "--in-place", "--yes")...)
	if r.code != 0 {
		t.Fatalf("restore --in-place of a --skip compose archive:\n%s", r)
	}
	t.Logf("restore --in-place of a --skip compose archive:\n%s", r)
	for f, want := range compose {
		if got, _ := os.ReadFile(f); !bytes.Equal(got, want) {
			t.Errorf("%s was replaced, though the archive holds no compose file", f)
		}
		if aside, _ := filepath.Glob(f + ".before-restore-*"); len(aside) > 0 {
			t.Errorf("%s was moved aside, though the archive holds no compose file to replace it: %v", f, aside)
		}
	}
	sameState(t, ".env", before[h.tree.EnvFile], h.tree.EnvFile)
	for name, id := range ids {
		if got := running(t, cli, id); got != wantUp[name] {
			t.Errorf("after the restore %s running=%v, want %v:\n%s", name, got, wantUp[name], r)
		}
	}
}

func mustInspect(t *testing.T, cli *client.Client, id string) container.InspectResponse {
	t.Helper()
	info, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func eventsFilter(id, event string) events.ListOptions {
	return events.ListOptions{Filters: filters.NewArgs(filters.Arg("container", id), filters.Arg("event", event))}
}

// movedBy finds the move that took p (or a directory holding it) aside.
func movedBy(moves []restore.Move, p string) (restore.Move, string, bool) {
	for _, mv := range moves {
		if p == mv.From {
			return mv, "", true
		}
		if rel, ok := strings.CutPrefix(p, mv.From+"/"); ok {
			return mv, rel, true
		}
	}
	return restore.Move{}, "", false
}

// placedOver says whether a placement put the archive's copy at p (or a directory holding it).
func placedOver(ps []restore.Placement, p string) bool {
	for _, pl := range ps {
		if p == pl.To || strings.HasPrefix(p, pl.To+"/") {
			return true
		}
	}
	return false
}
