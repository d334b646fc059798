package ssh

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrForcedCommand marks checks that cannot run because the server forces
// this key to one command (borg serve), as a hardened backup server does.
var ErrForcedCommand = errors.New("not run: the server forces this key to borg serve, as a hardened backup server should")

// HostKeyError means the server's host key is not in the known_hosts file
// (Changed false) or differs from the one recorded there (Changed true).
type HostKeyError struct {
	Host           string
	Port           int
	Fingerprint    string // SHA256:… of the key the server offered
	KnownHostsFile string
	Changed        bool
	Revoked        bool // the key is marked @revoked in known_hosts
	FileMissing    bool // the known_hosts file does not exist (yet)
	Line           int  // for Changed: the known_hosts line with the old key, if known
}

// knownName is the host as OpenSSH writes it in known_hosts.
func (e *HostKeyError) knownName() string {
	return knownhosts.Normalize(fmt.Sprintf("%s:%d", bracketIPv6(e.Host), e.port()))
}

func (e *HostKeyError) port() int {
	if e.Port == 0 {
		return 22
	}
	return e.Port
}

func bracketIPv6(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

func (e *HostKeyError) Error() string {
	switch {
	case e.Revoked:
		return fmt.Sprintf("host key %s of %s is marked @revoked in %s", e.Fingerprint, e.knownName(), e.KnownHostsFile)
	case e.Changed:
		where := e.KnownHostsFile
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.KnownHostsFile, e.Line)
		}
		return fmt.Sprintf("host key of %s has CHANGED: the server offered %s, which does not match %s", e.knownName(), e.Fingerprint, where)
	case e.FileMissing:
		return fmt.Sprintf("host key of %s is unknown: the server offered %s and the known_hosts file %s does not exist", e.knownName(), e.Fingerprint, e.KnownHostsFile)
	}
	return fmt.Sprintf("host key of %s is unknown: the server offered %s, which is not in %s", e.knownName(), e.Fingerprint, e.KnownHostsFile)
}

// Hint says how to trust the key, always after an out-of-band check.
func (e *HostKeyError) Hint() string {
	add := fmt.Sprintf("ssh-keyscan -p %d %s >> %s", e.port(), e.Host, e.KnownHostsFile)
	switch {
	case e.Revoked:
		return "the key was revoked on purpose; ask the backup server's admin for the server's current key before changing anything"
	case e.Changed:
		return fmt.Sprintf("this may be an attack (someone intercepting the connection) or a reinstalled server: confirm %s with the server's admin (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the server), and only then run ssh-keygen -R '%s' -f %s and %s",
			e.Fingerprint, e.knownName(), e.KnownHostsFile, add)
	}
	return fmt.Sprintf("confirm %s with the server's admin (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the server), then add it with %s and compare with ssh-keygen -lf %s",
		e.Fingerprint, add, e.KnownHostsFile)
}

// AuthError means the server refused every key we offered.
type AuthError struct {
	User string
	Host string
	Port int
	Keys []string // SHA256 fingerprints of the public keys offered
}

func (e *AuthError) Error() string {
	keys := "no key"
	if len(e.Keys) > 0 {
		keys = "key " + strings.Join(e.Keys, ", ")
	}
	return fmt.Sprintf("server %s:%d refused SSH login as %q with %s", e.Host, e.Port, e.User, keys)
}

// Hint points at authorized_keys and the usual mix-ups.
func (e *AuthError) Hint() string {
	return fmt.Sprintf("add this host's public key to ~%s/.ssh/authorized_keys on the server (`cht-backup init` prints the line), and check the user in --repo and the key in --ssh-key", e.User)
}

// UnreachableError means no SSH session could be set up with the server:
// DNS failure, refused connection, timeout or a failed handshake.
type UnreachableError struct {
	Host    string
	Port    int
	Reason  string // one line, e.g. "connection refused, nothing listens on that port"
	Err     error
	DNS     bool
	Refused bool
	Timeout bool
	// Handshake: TCP connected but no SSH session came up (not an SSH
	// server, or no common algorithms).
	Handshake bool
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach SSH server %s port %d: %s", e.Host, e.Port, e.Reason)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Hint suggests what to check for each kind of failure.
func (e *UnreachableError) Hint() string {
	switch {
	case e.DNS:
		return fmt.Sprintf("check the host name %q in --repo and this machine's DNS settings", e.Host)
	case e.Refused:
		return fmt.Sprintf("check the port in --repo (ssh://user@host:PORT/path) and that sshd runs on the server and listens on port %d", e.Port)
	case e.Handshake:
		return fmt.Sprintf("check that port %d of %s is the SSH server and not another service (try: ssh -v -p %d %s)", e.Port, e.Host, e.Port, e.Host)
	case e.Timeout:
		return fmt.Sprintf("check that the server is up and that no firewall drops port %d between here and there", e.Port)
	}
	return fmt.Sprintf("check that an SSH server answers on %s port %d (try: ssh -p %d %s)", e.Host, e.Port, e.Port, e.Host)
}

// KeyFileError means the SSH private key cannot be used.
type KeyFileError struct {
	Path      string // "" when no key file was given
	Problem   string // one line, never key material
	Encrypted bool   // the key needs a passphrase
	Err       error
	hint      string
}

func (e *KeyFileError) Error() string {
	if e.Path == "" {
		return e.Problem
	}
	return fmt.Sprintf("SSH key file %s %s", e.Path, e.Problem)
}

func (e *KeyFileError) Unwrap() error { return e.Err }

// Hint says how to provide a usable key.
func (e *KeyFileError) Hint() string { return e.hint }

// CommandError is a remote command that ran but failed.
type CommandError struct {
	Cmd        string
	ExitStatus int    // -1 when the command ended without a status (killed by a signal)
	Stderr     string // capped, one line
}

func (e *CommandError) Error() string {
	s := fmt.Sprintf("remote command %q failed", e.Cmd)
	if e.ExitStatus >= 0 {
		s += fmt.Sprintf(" with exit status %d", e.ExitStatus)
	}
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

func newHostKeyError(t Target, file string, missing bool, offered xssh.PublicKey, err error) *HostKeyError {
	e := &HostKeyError{Host: t.Host, Port: t.port(), KnownHostsFile: file, FileMissing: missing}
	if offered != nil {
		e.Fingerprint = xssh.FingerprintSHA256(offered)
	}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &revoked):
		e.Revoked = true
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		e.Changed = true
		e.Line = keyErr.Want[0].Line
		for _, k := range keyErr.Want {
			// Prefer the line holding the same key type: that is what changed.
			if offered != nil && k.Key.Type() == offered.Type() {
				e.Line = k.Line
				break
			}
		}
	}
	return e
}

// ownedByMe mirrors OpenSSH's permission check, which only applies to keys
// owned by the user running ssh.
func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
