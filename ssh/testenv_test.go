package ssh

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cht-backup/cht-backup/sources"
)

// testEnv is the real test environment written by scripts/test-env.sh:
// an sshd on 127.0.0.1 with a `borg` account holding a shell key and a key
// forced to `borg serve --append-only --restrict-to-path`.
type testEnv struct {
	Dir         string
	Host        string
	Port        int
	User        string
	ShellKey    string
	ForcedKey   string
	KnownHosts  string
	RepoRoot    string
	Fingerprint string
}

var (
	testEnvOnce sync.Once
	testEnvVal  testEnv
	testEnvErr  string
)

func testEnvFile() string {
	dir := os.Getenv("CHT_BACKUP_TESTENV")
	if dir == "" {
		dir = "/var/tmp/cht-backup-testenv"
	}
	return filepath.Join(dir, "env")
}

// loadTestEnv returns the environment, running scripts/test-env.sh first when
// its env file is missing or its sshd does not answer. Without root the test
// is skipped with the reason.
func loadTestEnv(t *testing.T) testEnv {
	t.Helper()
	testEnvOnce.Do(func() {
		// The script needs root, and the keys it writes are root's (mode 0600).
		if os.Geteuid() != 0 {
			testEnvErr = "SKIPPING SSH END-TO-END TEST: the real test environment (sshd with a borg account, root-only keys) needs root; run the tests as root"
			return
		}
		file := testEnvFile()
		env, err := readTestEnv(file)
		if err == nil && sshdAnswers(env) {
			testEnvVal = env
			return
		}
		script, _ := filepath.Abs(filepath.Join("..", "scripts", "test-env.sh"))
		out, err := exec.Command("bash", script).CombinedOutput()
		if err != nil {
			testEnvErr = "FATAL: " + script + " failed: " + err.Error() + "\n" + string(out)
			return
		}
		env, err = readTestEnv(file)
		if err != nil {
			testEnvErr = "FATAL: " + script + " ran but " + err.Error()
			return
		}
		testEnvVal = env
	})
	switch {
	case strings.HasPrefix(testEnvErr, "SKIPPING"):
		t.Skip(testEnvErr)
	case testEnvErr != "":
		t.Fatal(testEnvErr)
	}
	return testEnvVal
}

func readTestEnv(file string) (testEnv, error) {
	// The setup script writes a plain KEY=VALUE file: read it as any env file is read.
	kv, err := sources.ParseEnvFile(file)
	if err != nil {
		return testEnv{}, err
	}
	port, err := strconv.Atoi(kv["SSH_PORT"])
	if err != nil {
		return testEnv{}, &os.PathError{Op: "read SSH_PORT from", Path: file, Err: err}
	}
	env := testEnv{
		Dir: kv["TESTENV_DIR"], Host: kv["SSH_HOST"], Port: port, User: kv["SSH_USER"],
		ShellKey: kv["SSH_SHELL_KEY"], ForcedKey: kv["SSH_FORCED_KEY"], KnownHosts: kv["SSH_KNOWN_HOSTS"],
		RepoRoot: kv["SSH_REPO_ROOT"], Fingerprint: kv["SSH_HOST_KEY_FINGERPRINT"],
	}
	for name, v := range map[string]string{"SSH_HOST": env.Host, "SSH_USER": env.User, "SSH_SHELL_KEY": env.ShellKey,
		"SSH_FORCED_KEY": env.ForcedKey, "SSH_KNOWN_HOSTS": env.KnownHosts, "SSH_HOST_KEY_FINGERPRINT": env.Fingerprint} {
		if v == "" {
			return testEnv{}, &os.PathError{Op: "read " + name + " from", Path: file, Err: os.ErrNotExist}
		}
	}
	return env, nil
}

// sshdAnswers is true when an SSH server greets on the environment's port.
func sshdAnswers(env testEnv) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(env.Host, strconv.Itoa(env.Port)), 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

func (e testEnv) target() Target {
	return Target{User: e.User, Host: e.Host, Port: e.Port}
}
