// Package borg knows BorgBackup: how to name repositories and archives, how to build the argv of
// each borg verb (pure functions, table-tested), and how to run borg safely in one place (Runner):
// passphrase through a pipe, stdin closed, its own process group, SIGINT on cancel, --log-json
// decoded, exit codes and msgids turned into typed errors.
package borg

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Repository is a parsed borg repository location.
type Repository struct {
	Raw  string // as the user wrote it; what borg is given
	User string // empty for local repositories or when ssh's default user applies
	Host string // empty for local repositories
	Port int    // 0 means ssh's default
	Path string // server-side path; relative paths are relative to the ssh user's home
}

// Local reports whether the repository is a path on this host (another disk, a mounted medium).
func (r Repository) Local() bool { return r.Host == "" }

func (r Repository) String() string { return r.Raw }

// ParseRepository understands the forms borg 1.2 accepts: ssh://[user@]host[:port]/path,
// [user@]host:path (scp style), file:///path and plain local paths.
func ParseRepository(s string) (Repository, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Repository{}, fmt.Errorf("empty repository: give --repo as ssh://user@host/./path, user@host:path or a local path")
	}
	if strings.Contains(withoutBrackets(s), "::") {
		return Repository{}, fmt.Errorf("repository %q names an archive (::): give the repository alone", s)
	}
	r := Repository{Raw: s}
	switch {
	case strings.HasPrefix(s, "ssh://"):
		rest := strings.TrimPrefix(s, "ssh://")
		slash := strings.Index(rest, "/")
		if slash < 0 {
			return Repository{}, fmt.Errorf("repository %q has no path after the host: use ssh://user@host/./path", s)
		}
		authority, path := rest[:slash], rest[slash:]
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			r.User, authority = authority[:at], authority[at+1:]
		}
		host, port, err := splitHostPort(authority)
		if err != nil {
			return Repository{}, fmt.Errorf("repository %q: %v", s, err)
		}
		r.Host, r.Port = host, port
		// borg: /./x and /~/x are relative to the home directory.
		switch {
		case strings.HasPrefix(path, "/./"):
			path = path[3:]
		case strings.HasPrefix(path, "/~/"):
			path = path[3:]
		case strings.HasPrefix(path, "/~"):
			path = path[1:]
		}
		r.Path = path
	case strings.HasPrefix(s, "file://"):
		r.Path = strings.TrimPrefix(s, "file://")
	case isSCPStyle(s):
		colon := strings.Index(s, ":")
		if strings.HasPrefix(s, "[") { // [ipv6]:path
			end := strings.Index(s, "]")
			colon = end + 1
		}
		authority, path := s[:colon], s[colon+1:]
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			r.User, authority = authority[:at], authority[at+1:]
		}
		r.Host = strings.Trim(authority, "[]")
		r.Path = path
	default:
		r.Path = s
	}
	if r.Host != "" && r.Path == "" {
		return Repository{}, fmt.Errorf("repository %q has no path on the server", s)
	}
	if r.Local() && !filepath.IsAbs(r.Path) {
		abs, err := filepath.Abs(r.Path)
		if err != nil {
			return Repository{}, err
		}
		r.Path = abs
		r.Raw = abs // borg is run with other working directories; keep it unambiguous
	}
	return r, nil
}

// isSCPStyle tells host:path from a local path that happens to contain a colon.
func isSCPStyle(s string) bool {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "~") {
		return false
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		return end > 0 && len(s) > end+1 && s[end+1] == ':'
	}
	colon := strings.Index(s, ":")
	if colon <= 0 {
		return false
	}
	return !strings.Contains(s[:colon], "/")
}

func splitHostPort(authority string) (string, int, error) {
	if authority == "" {
		return "", 0, fmt.Errorf("no host")
	}
	if !strings.Contains(authority, ":") || (strings.HasPrefix(authority, "[") && strings.HasSuffix(authority, "]")) {
		return strings.Trim(authority, "[]"), 0, nil
	}
	host, portStr, err := net.SplitHostPort(authority)
	if err != nil {
		return "", 0, fmt.Errorf("bad host:port %q", authority)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", portStr)
	}
	return host, port, nil
}

// ArchiveRef names one archive of a repository the way borg wants it: REPO::NAME.
func ArchiveRef(repo Repository, archive string) string {
	return repo.Raw + "::" + archive
}

// withoutBrackets drops a [ipv6] host so its colons are not taken for REPO::ARCHIVE.
func withoutBrackets(s string) string {
	if i := strings.Index(s, "["); i >= 0 {
		if j := strings.Index(s[i:], "]"); j >= 0 {
			return s[:i] + s[i+j+1:]
		}
	}
	return s
}

// checkpointRE matches the names borg gives the partial archives an interrupted create leaves:
// NAME.checkpoint, and NAME.checkpoint.N when several were written.
var checkpointRE = regexp.MustCompile(`\.checkpoint(\.[0-9]+)?$`)

// IsCheckpoint reports whether an archive name is one of borg's checkpoints: a partial archive
// left by an interrupted backup, never to be taken for a complete one.
func IsCheckpoint(name string) bool { return checkpointRE.MatchString(name) }
