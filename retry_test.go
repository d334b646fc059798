package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/ssh"
)

func TestWithRetryRetriesConnectionFailuresOnly(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		calls int
	}{
		{"borg connection closed", &borg.Error{Verb: "create", Target: "r", Kind: borg.ErrConnectionClosed}, 4},
		{"ssh unreachable", &ssh.UnreachableError{Host: "backup", Port: 22, Reason: "connection refused", Refused: true}, 4},
		{"wrapped connection closed", fmt.Errorf("listing: %w", &borg.Error{Kind: borg.ErrConnectionClosed}), 4},
		{"wrong passphrase", &borg.Error{Verb: "create", Kind: borg.ErrPassphraseWrong}, 1},
		{"borg host key", &borg.Error{Verb: "create", Kind: borg.ErrHostKey}, 1},
		{"borg auth", &borg.Error{Verb: "create", Kind: borg.ErrAuth}, 1},
		{"ssh host key changed", &ssh.HostKeyError{Host: "backup", Changed: true}, 1},
		{"ssh auth", &ssh.AuthError{Host: "backup"}, 1},
		{"repository locked", &borg.Error{Kind: borg.ErrLockTimeout}, 1},
		{"no space", &borg.Error{Kind: borg.ErrNoSpace}, 1},
		{"anything else", errors.New("boom"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _ := jobOptions(t, t.TempDir())
			o.RetryWait = time.Millisecond
			calls := 0
			err := withRetry(context.Background(), o, "op", func(ctx context.Context) error { calls++; return tt.err })
			if calls != tt.calls || err != tt.err {
				t.Fatalf("%d calls (want %d), error %v", calls, tt.calls, err)
			}
		})
	}
}

// The wait doubles, each retry is logged with its reason, and success ends the retries.
func TestWithRetryBacksOffAndLogs(t *testing.T) {
	o, logBuf := jobOptions(t, t.TempDir())
	o.Retries, o.RetryWait = 5, 20*time.Millisecond
	calls := 0
	start := time.Now()
	err := withRetry(context.Background(), o, "listing archives of R", func(ctx context.Context) error {
		if calls++; calls < 4 {
			return &borg.Error{Verb: "list", Target: "R", Kind: borg.ErrConnectionClosed}
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("%d calls, %v", calls, err)
	}
	if took := time.Since(start); took < 140*time.Millisecond {
		t.Errorf("waits 20+40+80ms, took %s", took)
	}
	log := logBuf.String()
	for _, want := range []string{
		"listing archives of R failed: borg list R: connection to the backup server closed; retry 1 of 5 in 20ms",
		"retry 2 of 5 in 40ms", "retry 3 of 5 in 80ms",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "retry 4") {
		t.Errorf("retried after success:\n%s", log)
	}
}

// A signal during the wait ends it at once; the error says both what failed and why it stopped.
func TestWithRetryStopsOnCancel(t *testing.T) {
	o, _ := jobOptions(t, t.TempDir())
	logs := &lineWatch{} // read while withRetry writes
	o.Log.SetOutput(logs)
	o.RetryWait = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		result <- withRetry(ctx, o, "op", func(ctx context.Context) error { return &borg.Error{Kind: borg.ErrConnectionClosed} })
	}()
	// The signal comes once the wait before the first retry has begun.
	logs.waitFor(t, "retry 1 of 3 in 1h0m0s", 10*time.Second)
	cancel()
	var err error
	select {
	case err = <-result:
	case <-time.After(10 * time.Second):
		t.Fatal("kept waiting 10s after the cancel")
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, borg.ErrConnectionClosed) || exitCode(err) != exitInterrupted {
		t.Fatalf("error %v (exit %d)", err, exitCode(err))
	}
}

// A passing outage of the backup server: the server stops answering, the SSH check and a borg
// call start and fail, the server comes back once both have failed, and both succeed on a retry.
// The outage is of a proxy on a port the kernel hands out, in front of the shared test sshd, so
// tests using that sshd at the same time are not disturbed.
func TestRetrySucceedsOnceTheServerIsBack(t *testing.T) {
	w := newWorld(t)
	w.mustInit(t, w.remoteRepo())
	p := newProxy(t, net.JoinHostPort(testEnv["SSH_HOST"], testEnv["SSH_PORT"]))
	port := strconv.Itoa(p.port)
	kh := filepath.Join(w.dir, "known_hosts_proxy")
	orig, err := os.ReadFile(testEnv["SSH_KNOWN_HOSTS"])
	if err != nil {
		t.Fatal(err)
	}
	rewritten := bytes.ReplaceAll(orig, []byte("]:"+testEnv["SSH_PORT"]+" "), []byte("]:"+port+" "))
	if bytes.Equal(rewritten, orig) {
		t.Fatalf("%s has no entry for port %s to rewrite", testEnv["SSH_KNOWN_HOSTS"], testEnv["SSH_PORT"])
	}
	if err := os.WriteFile(kh, rewritten, 0o600); err != nil {
		t.Fatal(err)
	}
	repoURL := strings.Replace(w.remoteRepo(), ":"+testEnv["SSH_PORT"]+"/", ":"+port+"/", 1)

	// A fresh borg base dir: borg rightly refuses a known repository seen at a new address.
	t.Setenv("BORG_BASE_DIR", filepath.Join(w.dir, "borg-base-proxy-port"))
	o, _ := jobOptions(t, w.stateDir, repoURL)
	logs := &lineWatch{} // read while the retrying calls write
	o.Log.SetOutput(logs)
	o.PassphraseFile, o.SSHKey, o.KnownHosts = w.passFile, testEnv["SSH_SHELL_KEY"], kh
	o.Retries, o.RetryWait = 5, time.Second
	repo := o.Repos[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := o.runner(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listArchives(ctx, r, repo); err != nil {
		t.Fatalf("the proxy does not lead to the repository: %v", err)
	}
	p.down()

	start := time.Now()
	var wg sync.WaitGroup
	var reachErr, listErr error
	var reachDone, listDone time.Time
	wg.Add(2)
	go func() {
		defer wg.Done()
		reachErr = withRetry(ctx, o, "reaching "+repo.Raw, func(ctx context.Context) error { _, err := checkReachable(ctx, o, repo); return err })
		reachDone = time.Now()
	}()
	go func() {
		defer wg.Done()
		listErr = withRetry(ctx, o, "listing archives of "+repo.Raw, func(ctx context.Context) error {
			_, err := listArchives(ctx, r, repo)
			return err
		})
		listDone = time.Now()
	}()
	// The server comes back only once both calls have met the outage.
	logs.waitFor(t, "reaching "+repo.Raw+" failed", 60*time.Second)
	logs.waitFor(t, "listing archives of "+repo.Raw+" failed", 60*time.Second)
	back := time.Now()
	p.up(t)
	wg.Wait()
	if reachErr != nil || listErr != nil {
		t.Fatalf("after the server came back: reach %v, list %v\n%s", reachErr, listErr, logs)
	}
	if reachDone.Before(back) || listDone.Before(back) {
		t.Fatalf("succeeded while the server was down? (back at %s, reach %s, list %s)", back, reachDone, listDone)
	}
	t.Logf("outage of %s; reached after %s, listed after %s", back.Sub(start).Round(100*time.Millisecond),
		reachDone.Sub(start).Round(100*time.Millisecond), listDone.Sub(start).Round(100*time.Millisecond))
	log := logs.String()
	for _, want := range []string{
		"reaching " + repo.Raw + " failed: cannot reach SSH server 127.0.0.1 port " + port,
		"listing archives of " + repo.Raw + " failed: borg",
		"retry 1 of 5 in 1s",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
