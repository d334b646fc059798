package ssh

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cht-backup/cht-backup/ssh/sshtest"
)

func localBorgVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("borg", "--version").Output()
	if err != nil {
		t.Fatalf("borg --version: %v", err)
	}
	v, err := parseBorgVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func dial(t *testing.T, env testEnv, key string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{KeyFile: key, KnownHostsFile: env.KnownHosts}, env.target())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkUserError asserts the shape every user-facing error must have.
func checkUserError(t *testing.T, err error, hint string, wantIn ...string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "\n") || strings.Contains(hint, "\n") {
		t.Errorf("message or hint spans several lines:\n%s\n%s", msg, hint)
	}
	if hint == "" {
		t.Errorf("no hint for %q", msg)
	}
	for _, w := range wantIn {
		if !strings.Contains(msg+" || "+hint, w) {
			t.Errorf("%q / %q lacks %q", msg, hint, w)
		}
	}
	if strings.Contains(msg+hint, "PRIVATE KEY") {
		t.Errorf("message leaks key material: %q", msg)
	}
	t.Logf("error: %s\nhint:  %s", msg, hint)
}

func TestProbeShellKey(t *testing.T) {
	env := loadTestEnv(t)
	c := dial(t, env, env.ShellKey)
	if got := c.HostKeyFingerprint(); got != env.Fingerprint {
		t.Errorf("HostKeyFingerprint = %s, want %s", got, env.Fingerprint)
	}
	ctx := context.Background()
	disk := quietDisk(t, env)
	p := c.Probe(ctx, disk+"/not-created-yet/deeper")

	if p.Forced {
		t.Error("Forced = true for the shell key")
	}
	if want := localBorgVersion(t); p.BorgVersion != want || p.BorgVersionErr != nil {
		t.Errorf("BorgVersion = %q, %v; want %q", p.BorgVersion, p.BorgVersionErr, want)
	}
	if p.Whoami != env.User || p.WhoamiErr != nil {
		t.Errorf("Whoami = %q, %v; want %q", p.Whoami, p.WhoamiErr, env.User)
	}
	// The test sshd runs on this machine.
	if host, _ := os.Hostname(); p.Hostname != host || p.HostnameErr != nil {
		t.Errorf("Hostname = %q, %v; want %q", p.Hostname, p.HostnameErr, host)
	}
	if p.DateErr != nil || p.RemoteTime.IsZero() {
		t.Errorf("RemoteTime = %v, %v", p.RemoteTime, p.DateErr)
	}
	if p.ClockSkew < -time.Second || p.ClockSkew > time.Second {
		t.Errorf("ClockSkew = %v against the same clock, want under 1s", p.ClockSkew)
	}
	t.Logf("clock skew against the same clock: %v", p.ClockSkew)
	if p.FreeErr != nil || p.FreeBytes == 0 {
		t.Fatalf("FreeBytes = %d, %v", p.FreeBytes, p.FreeErr)
	}
	// Same machine, and a disk nobody else writes to: statfs must agree to the byte.
	if local := statfsFree(t, disk); p.FreeBytes != local {
		t.Errorf("FreeBytes = %d, statfs of %s says %d", p.FreeBytes, disk, local)
	}
}

// TestProbeRepoPathForms checks that every spelling borg accepts for a
// repository path reaches df, including repositories not created yet.
func TestProbeRepoPathForms(t *testing.T) {
	env := loadTestEnv(t)
	c := dial(t, env, env.ShellKey)
	for _, path := range []string{
		"", "cht", "repos/cht", "/./repos/cht", "/~/repos/cht", "~/repos/cht", "~", "/~" + env.User + "/repos/cht",
		"~" + env.User, env.RepoRoot, env.RepoRoot + "/a b/it's", "/nonexistent-top/x",
	} {
		script, err := dfScript(path)
		if err != nil {
			t.Errorf("dfScript(%q): %v", path, err)
			continue
		}
		out, err := c.Run(context.Background(), script)
		if err != nil {
			t.Errorf("path %q: %v", path, err)
			continue
		}
		if free, err := parseDF(out); err != nil || free == 0 {
			t.Errorf("path %q: free %d, %v (df said %q)", path, free, err, out)
		}
	}
}

func TestProbeForcedKey(t *testing.T) {
	env := loadTestEnv(t)
	c := dial(t, env, env.ForcedKey)
	p := c.Probe(context.Background(), env.RepoRoot+"/cht")
	if !p.Forced {
		t.Error("Forced = false for the key forced to borg serve")
	}
	if want := localBorgVersion(t); p.BorgVersion != want || p.BorgVersionErr != nil {
		t.Errorf("BorgVersion = %q, %v; want %q from borg serve", p.BorgVersion, p.BorgVersionErr, want)
	}
	for name, err := range map[string]error{"whoami": p.WhoamiErr, "hostname": p.HostnameErr, "date": p.DateErr, "free": p.FreeErr} {
		if !errors.Is(err, ErrForcedCommand) {
			t.Errorf("%s error = %v, want ErrForcedCommand", name, err)
		}
	}
}

func TestBorgServeVersionShellKey(t *testing.T) {
	env := loadTestEnv(t)
	c := dial(t, env, env.ShellKey)
	v, err := c.BorgServeVersion(context.Background())
	if want := localBorgVersion(t); v != want || err != nil {
		t.Errorf("BorgServeVersion = %q, %v; want %q", v, err, want)
	}
}

func TestRun(t *testing.T) {
	env := loadTestEnv(t)
	c := dial(t, env, env.ShellKey)
	ctx := context.Background()

	out, err := c.Run(ctx, "echo hello; cat")
	if err != nil || out != "hello\n" {
		t.Errorf("Run = %q, %v; want hello and an immediate EOF on stdin", out, err)
	}

	_, err = c.Run(ctx, "echo oops >&2; exit 3")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitStatus != 3 || ce.Stderr != "oops" {
		t.Errorf("Run(exit 3) error = %#v", err)
	}

	// stderr is capped.
	_, err = c.Run(ctx, "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1")
	if !errors.As(err, &ce) || len(ce.Stderr) > 400 {
		t.Errorf("stderr not capped: %d bytes", len(ce.Stderr))
	}

	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Run(ctx2, "sleep 30")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled Run = %v after %v", err, time.Since(start))
	}
	// The connection stays usable after a cancelled command.
	if out, err := c.Run(ctx, "echo still"); err != nil || out != "still\n" {
		t.Errorf("Run after cancel = %q, %v", out, err)
	}
}

func TestHostKeyUnknown(t *testing.T) {
	env := loadTestEnv(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		missing    bool
	}{
		{"empty file", empty, false},
		{"missing file", filepath.Join(t.TempDir(), "none"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(context.Background(), Config{KeyFile: env.ShellKey, KnownHostsFile: tc.file}, env.target())
			var he *HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("Dial error = %v, want *HostKeyError", err)
			}
			if he.Changed || he.FileMissing != tc.missing || he.Fingerprint != env.Fingerprint || he.KnownHostsFile != tc.file {
				t.Errorf("HostKeyError = %+v, want unknown key %s", he, env.Fingerprint)
			}
			checkUserError(t, he, he.Hint(), env.Fingerprint, tc.file,
				fmt.Sprintf("ssh-keyscan -p %d %s >> %s", env.Port, env.Host, tc.file), "ssh-keygen -lf")
		})
	}
}

func TestHostKeyChanged(t *testing.T) {
	env := loadTestEnv(t)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  any
	}{
		{"same key type", edPub},
		// The server has no ECDSA key: it must offer its ed25519 key, and
		// that is a changed key, not a failed negotiation.
		{"other key type", &ecKey.PublicKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := xssh.NewPublicKey(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "known_hosts")
			line := knownhosts.Line([]string{net.JoinHostPort(env.Host, fmt.Sprint(env.Port))}, pub)
			if err := os.WriteFile(file, []byte("# comment\n"+line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Dial(context.Background(), Config{KeyFile: env.ShellKey, KnownHostsFile: file}, env.target())
			var he *HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("Dial error = %v, want *HostKeyError", err)
			}
			if !he.Changed || he.Fingerprint != env.Fingerprint || he.Line != 2 {
				t.Errorf("HostKeyError = %+v, want changed key %s at line 2", he, env.Fingerprint)
			}
			name := fmt.Sprintf("[%s]:%d", env.Host, env.Port)
			checkUserError(t, he, he.Hint(), "CHANGED", env.Fingerprint, "attack",
				fmt.Sprintf("ssh-keygen -R '%s' -f %s", name, file))
		})
	}
}

func writeKey(t *testing.T, mode os.FileMode, passphrase string) string {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = xssh.MarshalPrivateKey(priv, "test key")
	} else {
		block, err = xssh.MarshalPrivateKeyWithPassphrase(priv, "test key", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_test")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuthRefused(t *testing.T) {
	env := loadTestEnv(t)
	key := writeKey(t, 0o600, "")
	_, err := Dial(context.Background(), Config{KeyFile: key, KnownHostsFile: env.KnownHosts}, env.target())
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("Dial error = %v, want *AuthError", err)
	}
	if len(ae.Keys) != 1 || !strings.HasPrefix(ae.Keys[0], "SHA256:") {
		t.Errorf("AuthError.Keys = %v", ae.Keys)
	}
	checkUserError(t, ae, ae.Hint(), "refused", env.User, "authorized_keys")
}

func TestUnreachable(t *testing.T) {
	env := loadTestEnv(t)
	port := sshtest.ClosedPort(t)
	start := time.Now()
	_, err := Dial(context.Background(), Config{KeyFile: env.ShellKey, KnownHostsFile: env.KnownHosts},
		Target{User: env.User, Host: "127.0.0.1", Port: port})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !ue.Refused {
		t.Fatalf("Dial error = %v, want *UnreachableError (refused)", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("refused connection took %v", time.Since(start))
	}
	checkUserError(t, ue, ue.Hint(), "connection refused", fmt.Sprint(port))
}

// TestUnreachableTimeout: a listener that never speaks SSH must not hang Dial.
func TestUnreachableTimeout(t *testing.T) {
	env := loadTestEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), Config{KeyFile: env.ShellKey, KnownHostsFile: env.KnownHosts, Timeout: 500 * time.Millisecond},
		Target{User: env.User, Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !ue.Timeout {
		t.Fatalf("Dial error = %v, want *UnreachableError (timeout)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial took %v with a 500ms timeout", d)
	}
	checkUserError(t, ue, ue.Hint(), "no answer within 500ms")
}

// TestNotSSH: a port that answers with something other than SSH.
func TestNotSSH(t *testing.T) {
	env := loadTestEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	_, err = Dial(context.Background(), Config{KeyFile: env.ShellKey, KnownHostsFile: env.KnownHosts},
		Target{User: env.User, Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !ue.Handshake {
		t.Fatalf("Dial error = %v, want *UnreachableError (handshake)", err)
	}
	checkUserError(t, ue, ue.Hint(), "SSH handshake failed", "not another service")
}

func TestKeyFileErrors(t *testing.T) {
	env := loadTestEnv(t)
	pubOnly := filepath.Join(t.TempDir(), "id.pub")
	os.WriteFile(pubOnly, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0Z2fQNYwTw5Yk6iZ5uHf3kDsQbOj0bKEPOj6rW4Ccd x\n"), 0o600)
	tests := []struct {
		name, key string
		want      string
		encrypted bool
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), "does not exist", false},
		{"encrypted", writeKey(t, 0o600, "secret passphrase"), "passphrase", true},
		{"too open", writeKey(t, 0o644, ""), "chmod 600", false},
		{"public key", pubOnly, "public key", false},
		{"directory", t.TempDir(), "directory", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), Config{KeyFile: tt.key, KnownHostsFile: env.KnownHosts}, env.target())
			var ke *KeyFileError
			if !errors.As(err, &ke) || ke.Encrypted != tt.encrypted {
				t.Fatalf("Dial error = %#v, want *KeyFileError", err)
			}
			checkUserError(t, ke, ke.Hint(), tt.want)
			if strings.Contains(ke.Error(), "secret passphrase") {
				t.Error("passphrase in the message")
			}
		})
	}
	t.Run("no key at all", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		_, err := Dial(context.Background(), Config{KnownHostsFile: env.KnownHosts, UseAgent: true}, env.target())
		var ke *KeyFileError
		if !errors.As(err, &ke) {
			t.Fatalf("Dial error = %v, want *KeyFileError", err)
		}
		checkUserError(t, ke, ke.Hint(), "--ssh-key")
	})
}

// TestAgentOnly authenticates with a key held by a real ssh-agent and no key file.
func TestAgentOnly(t *testing.T) {
	env := loadTestEnv(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
	agentOut, err := agentCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agentCmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		agentCmd.Process.Kill()
		agentCmd.Wait()
	})
	// ssh-agent prints its SSH_AUTH_SOCK line once the socket listens: wait for that line.
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(agentOut)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "SSH_AUTH_SOCK=") {
				listening <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, agentOut)
	}()
	select {
	case line := <-listening:
		if !strings.Contains(line, sock) {
			t.Fatalf("ssh-agent listens elsewhere: %s", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ssh-agent did not say within 10s that it listens")
	}
	add := exec.Command("ssh-add", env.ShellKey)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	t.Setenv("SSH_AUTH_SOCK", sock)

	c, err := Dial(context.Background(), Config{KnownHostsFile: env.KnownHosts, UseAgent: true}, env.target())
	if err != nil {
		t.Fatalf("Dial with ssh-agent only: %v", err)
	}
	defer c.Close()
	if out, err := c.Run(context.Background(), "whoami"); err != nil || strings.TrimSpace(out) != env.User {
		t.Errorf("whoami = %q, %v", out, err)
	}

	// Without UseAgent the agent is not consulted.
	_, err = Dial(context.Background(), Config{KnownHostsFile: env.KnownHosts}, env.target())
	var ke *KeyFileError
	if !errors.As(err, &ke) {
		t.Errorf("Dial without key file and agent = %v, want *KeyFileError", err)
	}

	// With a key file borg's ssh offers that key alone (IdentitiesOnly=yes): the agent's key that
	// the server accepts must not make the pre-flight pass where borg will be refused.
	other := filepath.Join(t.TempDir(), "id_other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	if c, err := Dial(context.Background(), BorgConfig(other, env.KnownHosts), env.target()); err == nil {
		c.Close()
		t.Fatal("a key file the server refuses passed with the agent's key: borg would be refused")
	}
	c2, err := Dial(context.Background(), BorgConfig("", env.KnownHosts), env.target())
	if err != nil {
		t.Fatalf("without a key file borg's ssh uses the agent: %v", err)
	}
	c2.Close()
}

// FreeSpace, as a backup asks it: df through a key with a shell, ErrForcedCommand through
// the key forced to borg serve.
func TestFreeSpace(t *testing.T) {
	env := loadTestEnv(t)
	disk := quietDisk(t, env)
	free, err := dial(t, env, env.ShellKey).FreeSpace(context.Background(), disk+"/cht")
	if local := statfsFree(t, disk); err != nil || free != local {
		t.Errorf("FreeSpace with the shell key = %d, %v; statfs of %s says %d", free, err, disk, local)
	}
	if _, err := dial(t, env, env.ForcedKey).FreeSpace(context.Background(), disk+"/cht"); !errors.Is(err, ErrForcedCommand) {
		t.Errorf("FreeSpace with the forced key: %v, want ErrForcedCommand", err)
	}
}
