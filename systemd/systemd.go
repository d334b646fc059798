// Package systemd knows the service manager the scheduled jobs run under: whether this process
// is a unit's, what an installed unit lets it write (ReadWritePaths=), and how a line reaches
// the journal with its priority.
package systemd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// InUnit reports whether systemd started this very process as a service's ExecStart=: systemd
// (248 and later) sets SYSTEMD_EXEC_PID to that process's PID. A process merely descending from
// a service (a test run from a CI service, say) inherits the variable with another PID.
func InUnit() bool { return os.Getenv("SYSTEMD_EXEC_PID") == strconv.Itoa(os.Getpid()) }

// ReadWritePaths reads the ReadWritePaths= of a unit file: absolute paths, with systemd's
// quoting, specifier (%%) and variable ($$) escapes undone and the "-" and "+" prefixes dropped.
// An empty assignment resets the list, as for systemd.
func ReadWritePaths(unitFile string) ([]string, error) {
	f, err := os.Open(unitFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var paths []string
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
			continue
		case l[0] == '[':
			section = strings.Trim(l, "[]")
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || section != "Service" || strings.TrimSpace(k) != "ReadWritePaths" {
			continue
		}
		words, err := splitWords(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s: ReadWritePaths=: %v", unitFile, err)
		}
		if len(words) == 0 {
			paths = nil
		}
		for _, w := range words {
			w = strings.NewReplacer("%%", "%", "$$", "$").Replace(w)
			w = strings.TrimLeft(w, "-+")
			paths = append(paths, filepath.Clean(w))
		}
	}
	return paths, sc.Err()
}

// splitWords splits a value the way systemd splits a path list: blanks separate words, double
// or single quotes group them, and a backslash escapes the next character.
func splitWords(s string) ([]string, error) {
	var words []string
	var b strings.Builder
	in := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			in = true
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
			in = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if in {
				words = append(words, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote")
	}
	if in {
		words = append(words, b.String())
	}
	return words, nil
}

// Covered reports whether path p lies within one of dirs.
func Covered(p string, dirs []string) bool {
	p = filepath.Clean(p)
	for _, d := range dirs {
		if p == d || d == "/" || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// ReadOnly reports whether the file system holding p (or, when p does not exist yet, its
// nearest existing parent) refuses writes: how a path outside a unit's ReadWritePaths= looks
// from inside the unit.
func ReadOnly(p string) bool {
	for {
		err := syscall.Access(p, 2 /* W_OK */)
		if err == syscall.EROFS {
			return true
		}
		if err != syscall.ENOENT {
			return false
		}
		parent := filepath.Dir(p)
		if parent == p {
			return false
		}
		p = parent
	}
}
