// Package ssh owns the SSH pre-flight against a borg backup server: it
// connects with strict host-key checking (known_hosts, never trust on first
// use), authenticates with a key file and/or ssh-agent, and runs the checks a
// CHT admin needs before the first backup (remote borg version, account,
// clock skew, host name, free space), also on hardened servers whose key is
// forced to `borg serve`.
//
// Failures come back as typed errors (HostKeyError, AuthError,
// UnreachableError, KeyFileError), each with a one-line message and a Hint.
package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultTimeout bounds the TCP dial plus the SSH handshake.
const DefaultTimeout = 10 * time.Second

// Target is the SSH end of a borg repository URL.
type Target struct {
	User string
	Host string
	Port int // 0 means 22
}

func (t Target) port() int {
	if t.Port == 0 {
		return 22
	}
	return t.Port
}

// addr is host:port, the form x/crypto/ssh and knownhosts expect.
func (t Target) addr() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.port()))
}

// Config holds how to authenticate and which host keys to trust.
type Config struct {
	KeyFile        string        // private key; "" = only ssh-agent
	KnownHostsFile string        // "" means ~/.ssh/known_hosts of the running user
	UseAgent       bool          // also offer keys from $SSH_AUTH_SOCK when set
	Timeout        time.Duration // dial + handshake timeout, default DefaultTimeout
}

// BorgConfig offers the keys borg's ssh offers (borg.RSH): with a key file, that key alone
// (IdentitiesOnly=yes, so the agent is not asked); without one, the agent's keys. A pre-flight
// made with it passes only where borg's own connection will.
func BorgConfig(keyFile, knownHostsFile string) Config {
	return Config{KeyFile: keyFile, KnownHostsFile: knownHostsFile, UseAgent: keyFile == ""}
}

// Client is an authenticated connection to the backup server.
type Client struct {
	conn      *xssh.Client
	hostKey   xssh.PublicKey
	agentConn net.Conn
	target    Target

	// RemoteBorg is how the server's borg is started through a shell key, as borg's own
	// BORG_REMOTE_PATH says (shell words, e.g. "/opt/borg-1.4/bin/borg"); empty means borg.
	RemoteBorg string
}

func (c *Client) remoteBorg() string {
	if strings.TrimSpace(c.RemoteBorg) == "" {
		return "borg"
	}
	return c.RemoteBorg
}

// Dial connects to t, verifies the host key against the known_hosts file and
// authenticates. It never accepts a host key that is not already known.
func Dial(ctx context.Context, cfg Config, t Target) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	khFile, err := knownHostsPath(cfg.KnownHostsFile)
	if err != nil {
		return nil, err
	}
	signers, agentConn, err := loadSigners(cfg)
	if err != nil {
		return nil, err
	}
	closeAgent := func() {
		if agentConn != nil {
			agentConn.Close()
		}
	}

	// Read known_hosts before dialing, so a broken file is reported as such.
	kh, err := loadKnownHosts(khFile)
	if err != nil {
		closeAgent()
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", t.addr())
	if err != nil {
		closeAgent()
		return nil, unreachable(t, cfg.Timeout, err)
	}
	// The handshake has no context of its own: closing the connection is
	// what interrupts it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })

	var offered xssh.PublicKey
	var hostKeyErr error
	config := &xssh.ClientConfig{
		User: t.User,
		Auth: []xssh.AuthMethod{xssh.PublicKeysCallback(func() ([]xssh.Signer, error) {
			return signers, nil
		})},
		HostKeyCallback: func(hostname string, remote net.Addr, key xssh.PublicKey) error {
			offered = key
			if kh.missing {
				hostKeyErr = &knownhosts.KeyError{}
			} else {
				hostKeyErr = kh.check(hostname, remote, key)
			}
			return hostKeyErr
		},
		HostKeyAlgorithms: hostKeyAlgorithms(kh, t.addr(), conn.RemoteAddr()),
	}
	sshConn, chans, reqs, err := xssh.NewClientConn(conn, t.addr(), config)
	ctxDone := !stop()
	if err != nil {
		conn.Close()
		closeAgent()
		switch {
		case hostKeyErr != nil:
			return nil, newHostKeyError(t, khFile, kh.missing, offered, hostKeyErr)
		case offered != nil && strings.Contains(err.Error(), "unable to authenticate"):
			// x/crypto/ssh has no typed error for this; the host key was
			// verified, so the failure is ours to authenticate.
			return nil, &AuthError{User: t.User, Host: t.Host, Port: t.port(), Keys: fingerprints(signers)}
		case ctxDone && ctx.Err() != nil:
			return nil, unreachable(t, cfg.Timeout, ctx.Err())
		}
		reason := oneLine(strings.TrimPrefix(err.Error(), "ssh: handshake failed: "), 200)
		if errors.Is(err, io.EOF) {
			reason = "the server closed the connection"
		}
		return nil, &UnreachableError{Host: t.Host, Port: t.port(), Err: err, Handshake: true,
			Reason: "the SSH handshake failed: " + reason}
	}
	if ctxDone {
		sshConn.Close()
		closeAgent()
		return nil, unreachable(t, cfg.Timeout, ctx.Err())
	}
	return &Client{
		conn:      xssh.NewClient(sshConn, chans, reqs),
		hostKey:   offered,
		agentConn: agentConn,
		target:    t,
	}, nil
}

// Close ends the connection.
func (c *Client) Close() error {
	if c.agentConn != nil {
		c.agentConn.Close()
	}
	return c.conn.Close()
}

// HostKeyFingerprint is the server's verified host key as SHA256:….
func (c *Client) HostKeyFingerprint() string {
	return xssh.FingerprintSHA256(c.hostKey)
}

// knownHostsPath resolves "" to ~/.ssh/known_hosts of the running user; a
// systemd service may run without $HOME, so the passwd entry is the fallback.
func knownHostsPath(file string) (string, error) {
	if file != "" {
		return file, nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		u, uerr := user.Current()
		if uerr != nil {
			return "", fmt.Errorf("cannot find the home directory for ~/.ssh/known_hosts: %v; pass --known-hosts", uerr)
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}

// knownHosts is the parsed known_hosts file.
type knownHosts struct {
	check   xssh.HostKeyCallback // nil when missing
	missing bool                 // the file does not exist
	hasCA   bool                 // it holds @cert-authority lines
}

// loadKnownHosts parses the known_hosts file. A missing file is not an error
// here: the server's key is then unknown, which Dial reports with its
// fingerprint once the server offered it.
func loadKnownHosts(file string) (knownHosts, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return knownHosts{missing: true}, nil
	}
	if err != nil {
		return knownHosts{}, fmt.Errorf("cannot read known_hosts file %s: %s; check its permissions", file, errText(err))
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return knownHosts{}, fmt.Errorf("cannot parse known_hosts file %s: %s; fix or replace the file", file, oneLine(err.Error(), 200))
	}
	hasCA := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "@cert-authority") {
			hasCA = true
			break
		}
	}
	return knownHosts{check: cb, hasCA: hasCA}, nil
}

// preferredHostKeyAlgos is OpenSSH's client order, so that for an unknown
// host we show the fingerprint `ssh` itself would show.
var preferredHostKeyAlgos = []string{
	xssh.KeyAlgoED25519,
	xssh.KeyAlgoECDSA256, xssh.KeyAlgoECDSA384, xssh.KeyAlgoECDSA521,
	xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256,
}

var certHostKeyAlgos = []string{
	xssh.CertAlgoED25519v01,
	xssh.CertAlgoECDSA256v01, xssh.CertAlgoECDSA384v01, xssh.CertAlgoECDSA521v01,
	xssh.CertAlgoRSASHA512v01, xssh.CertAlgoRSASHA256v01,
}

// hostKeyAlgorithms asks the server first for a key type we already know for
// this host. Otherwise a server with several host keys may offer another type
// and knownhosts would call that a changed key.
//
// knownhosts has no lookup API, but checking a key that is certainly not in
// the file returns a KeyError listing every key known for the host.
func hostKeyAlgorithms(kh knownHosts, address string, remote net.Addr) []string {
	// Host certificates only help when a @cert-authority line can verify
	// them; otherwise the plain key is asked for, whose fingerprint is the
	// one an admin can compare.
	fallback := preferredHostKeyAlgos
	if kh.hasCA {
		fallback = slices.Concat(certHostKeyAlgos, preferredHostKeyAlgos)
	}
	if kh.missing {
		return fallback
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fallback
	}
	probe, err := xssh.NewPublicKey(pub)
	if err != nil {
		return fallback
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(kh.check(address, remote, probe), &keyErr) || len(keyErr.Want) == 0 {
		return fallback
	}
	var algos []string
	for _, k := range keyErr.Want {
		switch typ := k.Key.Type(); typ {
		case xssh.KeyAlgoRSA:
			algos = append(algos, xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256)
		default:
			algos = append(algos, typ)
		}
	}
	slices.SortStableFunc(algos, func(a, b string) int {
		return rank(a) - rank(b)
	})
	algos = slices.Compact(algos)
	if kh.hasCA {
		// knownhosts lists @cert-authority keys in Want as if they were host
		// keys, so certificates must stay first for CA-vouched hosts.
		algos = append(slices.Clone(certHostKeyAlgos), algos...)
	}
	// The other algorithms stay allowed, after the known ones, as OpenSSH
	// does: a server that lost the known key type then offers another one,
	// which is reported as a changed key rather than as a failed negotiation.
	for _, a := range fallback {
		if !slices.Contains(algos, a) {
			algos = append(algos, a)
		}
	}
	return algos
}

func rank(algo string) int {
	if i := slices.Index(preferredHostKeyAlgos, algo); i >= 0 {
		return i
	}
	return len(preferredHostKeyAlgos)
}

// loadSigners reads the key file and, when asked, the agent's keys.
func loadSigners(cfg Config) ([]xssh.Signer, net.Conn, error) {
	var signers []xssh.Signer
	if cfg.KeyFile != "" {
		s, err := readKeyFile(cfg.KeyFile)
		if err != nil {
			return nil, nil, err
		}
		signers = append(signers, s)
	}
	var agentConn net.Conn
	if sock := os.Getenv("SSH_AUTH_SOCK"); cfg.UseAgent && sock != "" {
		c, err := net.Dial("unix", sock)
		if err == nil {
			agentSigners, err := agent.NewClient(c).Signers()
			if err == nil {
				signers = append(signers, agentSigners...)
				agentConn = c
			} else {
				c.Close()
			}
		}
		// An unusable agent is only fatal when it was the only key source.
		if agentConn == nil && cfg.KeyFile == "" {
			return nil, nil, &KeyFileError{Problem: "ssh-agent at $SSH_AUTH_SOCK cannot be used and no key file is set",
				hint: "pass --ssh-key with an unencrypted private key, or start ssh-agent and add the key with ssh-add"}
		}
	}
	if len(signers) == 0 {
		if agentConn != nil {
			agentConn.Close()
		}
		problem := "no SSH key: no key file is set"
		switch {
		case cfg.UseAgent && os.Getenv("SSH_AUTH_SOCK") == "":
			problem += " and no ssh-agent is reachable ($SSH_AUTH_SOCK is not set)"
		case cfg.UseAgent:
			problem += " and ssh-agent holds no key"
		}
		return nil, nil, &KeyFileError{Problem: problem,
			hint: "pass --ssh-key with an unencrypted private key (ssh-keygen -t ed25519 -N '' -f FILE), or add a key to ssh-agent"}
	}
	return signers, agentConn, nil
}

// readKeyFile loads an unencrypted private key. It refuses what OpenSSH
// refuses too, because borg uses the same file through `ssh -i`.
func readKeyFile(path string) (xssh.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &KeyFileError{Path: path, Problem: "does not exist", Err: err,
				hint: "check --ssh-key, or create a key with: ssh-keygen -t ed25519 -N '' -f " + path}
		}
		return nil, &KeyFileError{Path: path, Problem: "cannot be read: " + errText(err), Err: err,
			hint: "check the path and that this user may read it"}
	}
	if st.IsDir() {
		return nil, &KeyFileError{Path: path, Problem: "is a directory, not a private key file",
			hint: "pass the private key file itself, e.g. ~/.ssh/id_ed25519"}
	}
	if ownedByMe(st) && st.Mode().Perm()&0o077 != 0 {
		return nil, &KeyFileError{Path: path, Problem: fmt.Sprintf("is accessible by group or others (mode %04o), so OpenSSH and therefore borg refuse it", st.Mode().Perm()),
			hint: "run: chmod 600 " + path}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &KeyFileError{Path: path, Problem: "cannot be read: " + errText(err), Err: err,
			hint: "check that this user may read it (mode 0600, owned by the user running cht-backup)"}
	}
	signer, err := xssh.ParsePrivateKey(data)
	if err != nil {
		var pm *xssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			return nil, &KeyFileError{Path: path, Problem: "is encrypted with a passphrase, which an unattended backup cannot type", Encrypted: true,
				hint: "use an unencrypted key dedicated to backups (ssh-keygen -t ed25519 -N '' -f FILE), or load the key into ssh-agent"}
		case strings.HasPrefix(strings.TrimSpace(string(data)), "ssh-") || strings.HasPrefix(strings.TrimSpace(string(data)), "ecdsa-"):
			return nil, &KeyFileError{Path: path, Problem: "holds a public key, not a private key",
				hint: "pass the private key file (the one without .pub)"}
		}
		// The parser's message never quotes key material.
		return nil, &KeyFileError{Path: path, Problem: "is not a private key this tool can read: " + oneLine(err.Error(), 120), Err: err,
			hint: "pass an OpenSSH private key file, e.g. ~/.ssh/id_ed25519"}
	}
	return signer, nil
}

func fingerprints(signers []xssh.Signer) []string {
	var out []string
	for _, s := range signers {
		out = append(out, xssh.FingerprintSHA256(s.PublicKey()))
	}
	return out
}

// unreachable classifies a dial failure.
func unreachable(t Target, timeout time.Duration, err error) *UnreachableError {
	e := &UnreachableError{Host: t.Host, Port: t.port(), Err: err}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr) && (dnsErr.IsNotFound || strings.Contains(dnsErr.Err, "no such host")):
		e.Reason = "the host name is not known to DNS"
		e.DNS = true
	case errors.As(err, &dnsErr):
		e.Reason = "the host name could not be resolved: " + dnsErr.Err
		e.DNS = true
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		e.Reason = fmt.Sprintf("no answer within %s", timeout)
		e.Timeout = true
	case errors.Is(err, context.Canceled):
		e.Reason = "cancelled"
	case strings.Contains(err.Error(), "connection refused"):
		e.Reason = "connection refused, nothing listens on that port"
		e.Refused = true
	default:
		e.Reason = errText(err)
	}
	return e
}

// errText is an error's last, most specific part ("connection refused"
// rather than "dial tcp 127.0.0.1:1: connect: connection refused").
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		s := oe.Err.Error()
		if i := strings.LastIndex(s, ": "); i >= 0 {
			s = s[i+2:]
		}
		return s
	}
	return oneLine(err.Error(), 200)
}

// oneLine flattens s to one line of at most max bytes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
