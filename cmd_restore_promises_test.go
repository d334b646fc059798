package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources/sourcestest"
	"github.com/cht-backup/cht-backup/state"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"
)

// exitsOnRestart replaces a fixture container by one with the same name, labels and volume that
// runs now but exits 1 as soon as it is started again once the file "broken" exists in flagDir:
// a service whose configuration went bad while it was stopped. It returns the new container's id.
func exitsOnRestart(t *testing.T, cli *client.Client, c sourcestest.TestContainer, flagDir string) string {
	return recreateContainer(t, cli, c, func(cfg *container.Config, hc *container.HostConfig) {
		cfg.Env = append(cfg.Env, "SLEEPER_EXIT_IF=/flags/broken")
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: flagDir, Target: "/flags", ReadOnly: true})
	})
}

// restore --in-place starts again the containers it stopped; one that is not running afterwards
// (it exits at start, as with a bad configuration) makes the restore exit 1 and name it, with the
// command that shows why. The files are restored nonetheless, and the other containers run.
func TestRestoreInPlaceExits1WhenARestartedContainerIsNotRunning(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	cs, cli := h.containers, h.containers.Client
	flags := t.TempDir()
	nginxID := exitsOnRestart(t, cli, cs.Nginx, flags)
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	before := treeState(t, h.tree)

	// After the backup: a database file lost, .env changed, and nginx's configuration broken
	// while nginx keeps running (it only notices when started again).
	if err := os.Remove(h.tree.CouchFiles[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.tree.EnvFile, append(append([]byte{}, before[h.tree.EnvFile].body...), "ALTERED=1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(flags, "broken"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !running(t, cli, nginxID) || !running(t, cli, cs.CouchDB.ID) {
		t.Fatal("both containers must run before the restore")
	}

	r := w.run(w.restoreArgs(h, "latest", "--in-place", "--yes")...)
	t.Logf("restore --in-place:\n%s", r)
	if r.code != 1 {
		t.Fatalf("a restarted container that is not running must give exit 1:\n%s", r)
	}
	noSecrets(t, h, r)
	named := lines(r.stdout, "not running")
	if len(named) != 1 || !strings.Contains(named[0], "warning: container "+cs.Nginx.Name+" is exited") || !strings.Contains(named[0], "docker logs "+cs.Nginx.Name) {
		t.Fatalf("want one warning naming %s as not running and how to see why, got %q:\n%s", cs.Nginx.Name, named, r)
	}
	if strings.Contains(strings.Join(named, "\n"), cs.CouchDB.Name) {
		t.Errorf("couchdb runs again, yet is named as not running: %q", named)
	}
	if !strings.Contains(r.stdout, "restored archive ") || !strings.Contains(r.stdout, "started: "+cs.Nginx.Name+" is exited") {
		t.Errorf("the restore itself went through and reports each container's state; the output must say so:\n%s", r)
	}

	// Docker agrees: nginx exited by itself (its own log says why), couchdb runs.
	info := mustInspect(t, cli, nginxID)
	if info.State.Running || info.State.ExitCode != 1 {
		t.Errorf("nginx: running=%v exit=%d, want exited with 1", info.State.Running, info.State.ExitCode)
	}
	if logs := containerLogs(t, cli, nginxID); !strings.Contains(logs, "/flags/broken exists") {
		t.Errorf("nginx did not exit for the broken configuration; its log:\n%s", logs)
	}
	if !running(t, cli, cs.CouchDB.ID) {
		t.Error("couchdb was started again and must be running")
	}

	// The data came back all the same, files in the containers too.
	for p, want := range before {
		sameState(t, "restored", want, p)
	}
	checkContainerFiles(t, cs, nginxID, sourcestest.NginxPrivateDir)
	checkContainerFiles(t, cs, cs.CouchDB.ID, sourcestest.CouchDBLocalDDir)

	f, err := state.Load(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	e := f.Find(state.JobRestore, w.remoteRepo())
	if e == nil || e.LastRun.ExitCode != 1 || e.LastRun.Status != state.StatusWarning {
		t.Fatalf("the restore must be recorded as finished with a warning (exit 1): %+v", e)
	}
	if ws := strings.Join(e.LastRun.Warnings, "\n"); !strings.Contains(ws, cs.Nginx.Name+" is exited, not running") {
		t.Errorf("the state must name the container that is not running, so status shows it: %q", ws)
	}
}

func containerLogs(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	rc, err := cli.ContainerLogs(context.Background(), id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// restoreQuestion is what an in-place restore asks on a terminal.
const restoreQuestion = "Type yes to restore in place: "

// eot is what Ctrl-D at the start of a line types: the reader sees the end of its input.
const eot = "\x04"

// runOnTerminal runs the binary with a pseudo-terminal as its stdin, as an admin's ssh session
// gives it. It waits for the question on stderr and then types answer on the terminal (followed
// by Enter, unless answer is Ctrl-D). The passphrase is watched for as in world.run.
func (w *world) runOnTerminal(t *testing.T, answer string, args ...string) result {
	t.Helper()
	ptmx, pts := openPTY(t)
	defer ptmx.Close()
	cmd := w.command(args...)
	cmd.Stdin = pts
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stop, leak := make(chan struct{}), make(chan string, 1)
	go watchProcs(w.passphrase, pidsNow(), stop, leak)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close() // the child holds it now
	killer := time.AfterFunc(5*time.Minute, func() { cmd.Process.Kill() })
	defer killer.Stop()
	go io.Copy(io.Discard, ptmx) // the terminal's echo

	var mu sync.Mutex
	var stderr strings.Builder
	asked := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		once := sync.Once{}
		for {
			n, err := errPipe.Read(buf)
			mu.Lock()
			stderr.Write(buf[:n])
			seen := strings.Contains(stderr.String(), restoreQuestion)
			mu.Unlock()
			if seen {
				once.Do(func() { close(asked) })
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-asked:
		typed := answer + "\n"
		if answer == eot {
			typed = eot
		}
		if _, err := ptmx.Write([]byte(typed)); err != nil {
			t.Fatal(err)
		}
	case <-readDone:
	}
	<-readDone
	err = cmd.Wait()
	close(stop)
	if where := <-leak; where != "" {
		t.Fatalf("passphrase visible in %s while running %v", where, args)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return result{stdout.String(), stderr.String(), code}
}

// openPTY opens a pseudo-terminal pair: the controlling side and the terminal a child reads.
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ptmx, pts
}

// Without --yes an in-place restore shows the plan and asks on the terminal; it goes ahead on
// the answer yes alone. Any other answer, an empty line or Ctrl-D aborts with nothing changed
// and nothing recorded, and without a terminal it does not read an answer at all.
func TestRestoreInPlaceAsksForYesOnATerminal(t *testing.T) {
	t.Parallel() // self-contained: its own world, repositories and containers (see testenv_test.go)
	w := newWorld(t)
	h := newCHTHost(t, w, sourcestest.LabelsOnly)
	cs, cli := h.containers, h.containers.Client
	w.mustInit(t, w.remoteRepo())
	w.mustBackup(t, h)
	before := treeState(t, h.tree)

	// After the backup: a database file lost and .env changed; a restore would bring both back.
	lost := h.tree.CouchFiles[0]
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
	altered := append(append([]byte{}, before[h.tree.EnvFile].body...), "ALTERED=1\n"...)
	if err := os.WriteFile(h.tree.EnvFile, altered, 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T, r result) {
		t.Helper()
		if got, _ := os.ReadFile(h.tree.EnvFile); !bytes.Equal(got, altered) {
			t.Errorf(".env was changed:\n%s", r)
		}
		if _, err := os.Lstat(lost); !os.IsNotExist(err) {
			t.Errorf("the lost database file came back: %v\n%s", err, r)
		}
		if aside, _ := filepath.Glob(filepath.Join(h.tree.Root, "*", "*.before-restore-*")); len(aside) > 0 {
			t.Errorf("something was moved aside: %v", aside)
		}
		if aside, _ := filepath.Glob(filepath.Join(filepath.Dir(h.tree.CouchDBData), "*.before-restore-*")); len(aside) > 0 {
			t.Errorf("something was moved aside: %v", aside)
		}
		if !running(t, cli, cs.Nginx.ID) || !running(t, cli, cs.CouchDB.ID) {
			t.Errorf("a container was stopped:\n%s", r)
		}
		if f, err := state.Load(w.stateDir); err == nil && f.Find(state.JobRestore, w.remoteRepo()) != nil {
			t.Errorf("a restore that was not confirmed was recorded: %+v", f.Find(state.JobRestore, w.remoteRepo()))
		}
		if left, _ := filepath.Glob(filepath.Join(w.stateDir, "restore", "*")); len(left) > 0 {
			t.Errorf("scratch left in the state dir: %v", left)
		}
	}
	args := w.restoreArgs(h, "latest", "--in-place", "--couchdb", "never")

	for _, tc := range []struct{ name, answer string }{
		{"y", "y"}, {"no", "no"}, {"empty", ""}, {"Yes", "Yes"}, {"yes-please", "yes please"}, {"ctrl-d", eot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.runOnTerminal(t, tc.answer, args...)
			if r.code != 3 || !strings.Contains(r.stderr, restoreQuestion) || !strings.Contains(r.stderr, "not confirmed; nothing was changed") ||
				len(lines(r.stderr, "what to do: run again and answer yes")) != 1 {
				t.Fatalf("answer %q must abort (exit 3) and say how to go ahead:\n%s", tc.answer, r)
			}
			if !strings.Contains(r.stdout, "Restore in place from archive") || !strings.Contains(r.stdout, "move aside what is there now") {
				t.Errorf("the plan must be shown before the question:\n%s", r)
			}
			unchanged(t, r)
		})
	}

	// Without a terminal nothing is read, not even a yes waiting on stdin.
	cmd := w.command(args...)
	cmd.Stdin = strings.NewReader("yes\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stop, leak := make(chan struct{}), make(chan string, 1)
	go watchProcs(w.passphrase, pidsNow(), stop, leak)
	err := cmd.Run()
	close(stop)
	if where := <-leak; where != "" {
		t.Fatalf("passphrase visible in %s", where)
	}
	r := result{stdout.String(), stderr.String(), 0}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	}
	if r.code != 3 || !strings.Contains(r.stderr, "no terminal to ask on") || !strings.Contains(r.stderr, "--yes") || strings.Contains(r.stderr, restoreQuestion) {
		t.Fatalf("without a terminal the restore must refuse without asking, and name --yes:\n%s", r)
	}
	unchanged(t, r)
	if t.Failed() {
		return
	}

	r = w.runOnTerminal(t, "yes", args...)
	t.Logf("restore --in-place, answered yes:\n%s", r)
	if r.code != 0 || !strings.Contains(r.stderr, restoreQuestion) {
		t.Fatalf("answer yes must restore:\n%s", r)
	}
	for p, want := range before {
		sameState(t, "restored", want, p)
	}
	if !running(t, cli, cs.Nginx.ID) || !running(t, cli, cs.CouchDB.ID) {
		t.Errorf("containers not running after the restore:\n%s", r)
	}
}
