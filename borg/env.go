package borg

import (
	"fmt"
	"os"
	"strings"
)

// Secret holds a passphrase. It prints as [redacted] so it cannot slip into a log line or an
// error by accident; Bytes is the only way out, used to write it into borg's pipe.
type Secret struct{ b []byte }

// NewSecret keeps s, without the trailing newline a passphrase file usually has.
func NewSecret(s string) *Secret { return &Secret{b: []byte(strings.TrimRight(s, "\r\n"))} }

func (s *Secret) String() string   { return "[redacted]" }
func (s *Secret) GoString() string { return "[redacted]" }
func (s *Secret) Bytes() []byte    { return s.b }

// Credentials say how borg gets its passphrase and how it reaches the backup server.
type Credentials struct {
	Passphrase  *Secret // handed over through BORG_PASSPHRASE_FD
	PassCommand string  // BORG_PASSCOMMAND, when the user gave that instead
	SSHKey      string  // -i for ssh
	KnownHosts  string  // UserKnownHostsFile for ssh
}

// RSH builds BORG_RSH so borg's ssh uses the same identity and host keys as the pre-flight, and
// never asks a question or accepts an unknown host key.
func RSH(sshKey, knownHosts string) string {
	parts := []string{"ssh",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "ConnectTimeout=20",
		"-o", "ServerAliveInterval=30",
		"-o", "ServerAliveCountMax=4",
		// The backup server gets no way back into this host: no agent, no forwarded ports.
		"-o", "ForwardAgent=no",
		"-o", "ClearAllForwardings=yes",
	}
	if knownHosts != "" {
		parts = append(parts, "-o", "UserKnownHostsFile="+ShellQuote(knownHosts), "-o", "GlobalKnownHostsFile=/dev/null")
	}
	if sshKey != "" {
		parts = append(parts, "-o", "IdentitiesOnly=yes", "-i", ShellQuote(sshKey))
	}
	return strings.Join(parts, " ")
}

// ShellQuote quotes one word for a POSIX shell and for shlex.split, which is how borg splits
// BORG_RSH; words of safe characters stay as they are.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r == '@' || r == '+' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// secretVars never reach borg's environment: the passphrase goes through a pipe instead.
var secretVars = []string{"BORG_PASSPHRASE", "BORG_NEW_PASSPHRASE", "BORG_PASSPHRASE_FD", "BORG_PASSCOMMAND", "BORG_RSH"}

// ChildEnv is base without any secret or our own settings: the environment for every child
// process that needs no passphrase (borg --version, a passcommand, systemctl).
func ChildEnv(base []string) []string {
	env := make([]string, 0, len(base))
	for _, kv := range base {
		if !isSecretVar(kv) && !strings.HasPrefix(kv, "CHT_BACKUP_") {
			env = append(env, kv)
		}
	}
	return env
}

func isSecretVar(kv string) bool {
	for _, v := range secretVars {
		if strings.HasPrefix(kv, v+"=") {
			return true
		}
	}
	return false
}

// environ builds borg's environment from ours: secrets removed, answers to borg's yes/no
// questions fixed to the safe answer (stdin is closed, a timer run must never wait), BORG_RSH set.
func (c Credentials) environ(base []string, modernCodes bool, passFD int) []string {
	env := make([]string, 0, len(base)+10)
	for _, kv := range base {
		keep := !isSecretVar(kv)
		if strings.HasPrefix(kv, "CHT_BACKUP_") || strings.HasPrefix(kv, "BORG_EXIT_CODES=") {
			keep = false
		}
		if keep {
			env = append(env, kv)
		}
	}
	env = append(env,
		"BORG_RSH="+RSH(c.SSHKey, c.KnownHosts),
		"BORG_RELOCATED_REPO_ACCESS_IS_OK=no",
		"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no",
		"BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO",
		"BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=NO",
		"BORG_DISPLAY_PASSPHRASE=no",
	)
	if modernCodes {
		env = append(env, "BORG_EXIT_CODES=modern")
	}
	switch {
	case c.Passphrase != nil:
		env = append(env, fmt.Sprintf("BORG_PASSPHRASE_FD=%d", passFD))
	case c.PassCommand != "":
		env = append(env, "BORG_PASSCOMMAND="+c.PassCommand)
	}
	return env
}

// CredentialsFromEnv fills the passphrase from BORG_PASSPHRASE or BORG_PASSCOMMAND when no file
// was given; the caller removes BORG_PASSPHRASE from borg's environment by using environ.
func CredentialsFromEnv(c Credentials) Credentials {
	if c.Passphrase == nil && c.PassCommand == "" {
		if p, ok := os.LookupEnv("BORG_PASSPHRASE"); ok {
			c.Passphrase = NewSecret(p)
		} else if pc := os.Getenv("BORG_PASSCOMMAND"); pc != "" {
			c.PassCommand = pc
		}
	}
	return c
}
