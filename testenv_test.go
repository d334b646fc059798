package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources"
)

// The end-to-end tests run the built binary as a user would, against the real borg, the test
// sshd on 127.0.0.1 and dockerd, all set up by scripts/test-env.sh.

var (
	binPath   string
	testEnv   map[string]string
	envReason string // why end-to-end tests are skipped, when they are
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "cht-backup-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "cht-backup")
		// The tag testhold lets the tests hold a run where they could not otherwise stop it: an
		// in-place restore between two actions of a step, a backup between gathering and borg
		// create (restore.TestHoldEnv); it changes nothing else.
		if out, err := exec.Command("go", "build", "-tags", "testhold", "-o", binPath, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building cht-backup: %v\n%s", err, out)
			return 2
		}
		if os.Geteuid() != 0 {
			envReason = "SKIPPED: end-to-end tests need root (they install and start borg, sshd and dockerd with scripts/test-env.sh); run the tests as root (bash scripts/test.sh), or with sudo"
			fmt.Fprintln(os.Stderr, envReason)
		} else {
			cmd := exec.Command("bash", "scripts/test-env.sh")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "scripts/test-env.sh failed: %v\n", err)
				return 2
			}
			testEnv, err = sources.ParseEnvFile(filepath.Join(envOr("CHT_BACKUP_TESTENV", "/var/tmp/cht-backup-testenv"), "env"))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			if err := chooseBorgVersions(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// needEnv skips a test loudly when the real components cannot be had.
func needEnv(t *testing.T) {
	t.Helper()
	if testEnv == nil {
		t.Skip(envReason)
	}
}

// world is one test's view of the setup: a passphrase file, a state dir, an empty config file, its
// own borg base dir, and a fresh repository path on the test server.
type world struct {
	t          *testing.T
	dir        string
	passphrase string
	passFile   string
	stateDir   string
	config     string
	env        []string
	repoName   string
}

var repoSeq struct {
	sync.Mutex
	n int
}

// newWorld gives a test its own directory, passphrase, state dir and repository name, so tests
// may run in parallel. The long end-to-end tests that call t.Parallel keep to that: they set no
// environment variable of the test process (t.Setenv), mount nothing, and stop or change none of
// the shared test sshd, dockerd or test-env files. The others run one at a time before them.
func newWorld(t *testing.T) *world {
	t.Helper()
	needEnv(t)
	dir := t.TempDir()
	w := &world{t: t, dir: dir, passphrase: fmt.Sprintf("pass-%d-NeverInArgv", time.Now().UnixNano())}
	w.passFile = filepath.Join(dir, "passphrase")
	if err := os.WriteFile(w.passFile, []byte(w.passphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.stateDir = filepath.Join(dir, "state")
	w.config = filepath.Join(dir, "cht-backup.env")
	if err := os.WriteFile(w.config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	repoSeq.Lock()
	repoSeq.n++
	w.repoName = fmt.Sprintf("e2e-%s-%d-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), os.Getpid(), repoSeq.n)
	repoSeq.Unlock()
	t.Cleanup(func() { os.RemoveAll(filepath.Join(testEnv["SSH_REPO_ROOT"], w.repoName)) })

	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CHT_BACKUP_") || strings.HasPrefix(kv, "BORG_") || strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			continue
		}
		w.env = append(w.env, kv)
	}
	w.env = append(w.env, "BORG_BASE_DIR="+filepath.Join(dir, "borg-base"))
	if clientBorg != "" {
		w.env = append(w.env, "CHT_BACKUP_BORG="+clientBorg)
	}
	if serveBorg != "" {
		// the shell key runs what the client asks for; the forced key was swapped in TestMain
		w.env = append(w.env, "BORG_REMOTE_PATH="+serveBorg)
	}
	return w
}

// The whole end-to-end suite runs with any borg series as the client and as the server's borg
// serve: CHT_BACKUP_TEST_BORG=1.4 picks the client, CHT_BACKUP_TEST_BORG_SERVE=1.2 the server.
// Unset, both are the system's borg.
var (
	clientBorg string // CHT_BACKUP_BORG of every run, when chosen
	serveBorg  string // BORG_REMOTE_PATH of every run, when chosen
)

// borgSeriesPath is the wrapper test-env.sh set up for a borg series ("1.4"), or why there is none.
func borgSeriesPath(series string) (string, error) {
	key := strings.ReplaceAll(series, ".", "_")
	if p := testEnv["BORG_"+key]; p != "" {
		return p, nil
	}
	if why := testEnv["BORG_"+key+"_MISSING"]; why != "" {
		return "", fmt.Errorf("borg %s is not set up for the tests: %s", series, why)
	}
	return "", fmt.Errorf("borg %s is not set up for the tests (scripts/test-env.sh knows %s)", series, "1.2 and 1.4")
}

func chooseBorgVersions() error {
	if s := os.Getenv("CHT_BACKUP_TEST_BORG"); s != "" {
		p, err := borgSeriesPath(s)
		if err != nil {
			return fmt.Errorf("CHT_BACKUP_TEST_BORG=%s: %v", s, err)
		}
		clientBorg = p
	}
	if s := os.Getenv("CHT_BACKUP_TEST_BORG_SERVE"); s != "" {
		p, err := borgSeriesPath(s)
		if err != nil {
			return fmt.Errorf("CHT_BACKUP_TEST_BORG_SERVE=%s: %v", s, err)
		}
		serveBorg = p
		testEnv["SSH_FORCED_KEY"] = testEnv["SSH_FORCED_KEY_BORG_"+strings.ReplaceAll(s, ".", "_")]
	}
	return nil
}

// borgBin is the borg that plain-borg helpers run: the client series under test.
func borgBin() string {
	if clientBorg != "" {
		return clientBorg
	}
	return "borg"
}

// remoteRepo is this test's repository on the test sshd.
func (w *world) remoteRepo() string {
	return fmt.Sprintf("ssh://%s@%s:%s%s/%s", testEnv["SSH_USER"], testEnv["SSH_HOST"], testEnv["SSH_PORT"], testEnv["SSH_REPO_ROOT"], w.repoName)
}

func (w *world) remoteRepoPath() string { return filepath.Join(testEnv["SSH_REPO_ROOT"], w.repoName) }

// common are the flags every run of this world carries.
func (w *world) common(key string) []string {
	return []string{"--config", w.config, "--passphrase-file", w.passFile, "--state-dir", w.stateDir,
		"--known-hosts", testEnv["SSH_KNOWN_HOSTS"], "--ssh-key", key}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// command prepares a run of the binary for tests that signal it.
func (w *world) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binPath, args...)
	cmd.Env = w.env
	return cmd
}

// run runs the binary and, while it runs, watches every process's argv and environment for the
// passphrase: it must reach borg through a pipe only.
func (w *world) run(args ...string) result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	stop := make(chan struct{})
	leak := make(chan string, 1)
	go watchProcs(w.passphrase, pidsNow(), stop, leak)
	err := cmd.Run()
	close(stop)
	if where := <-leak; where != "" {
		w.t.Fatalf("passphrase visible in %s while running %v", where, args)
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			w.t.Fatalf("running %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	r := result{out.String(), errb.String(), code}
	if strings.Contains(r.stdout+r.stderr, w.passphrase) {
		w.t.Fatalf("passphrase printed by %v:\n%s", args, r)
	}
	return r
}

// pidsNow is the set of processes that exist now. Arguments of a go statement are evaluated
// before the goroutine starts, so `go watchProcs(secret, pidsNow(), ...)` takes it before the run.
func pidsNow() map[string]bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	set := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		set[d] = true
	}
	return set
}

// watchProcs reads the argv and environment of every process that did not exist before the run
// (the binary, borg, ssh, and anything they start), every 10 ms until stop, and reports where
// the secret shows. Processes that existed before cannot have received it: they are not read,
// which keeps the watch from taking a good share of a core on a busy machine.
func watchProcs(secret string, before map[string]bool, stop <-chan struct{}, leak chan<- string) {
	defer close(leak)
	for {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			if before[d] {
				continue
			}
			for _, f := range []string{"cmdline", "environ"} {
				if b, err := os.ReadFile(filepath.Join(d, f)); err == nil && bytes.Contains(b, []byte(secret)) {
					exe, _ := os.Readlink(filepath.Join(d, "exe"))
					leak <- filepath.Join(d, f) + " (" + exe + ")"
					return
				}
			}
		}
		select {
		case <-stop:
			leak <- ""
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// lines returns the lines of s that contain sub.
func lines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
