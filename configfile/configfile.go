// Package configfile reads cht-backup's own config file (KEY=VALUE lines, CHT_BACKUP_* names).
//
// The file is read by cht-backup alone: the systemd units pass it with --config and do not
// load it as an EnvironmentFile=. It stays usable as one, though (people point their own units,
// or a shell, at it), so the grammar here is the part on which cht-backup and systemd's
// EnvironmentFile= parser read the same value, and every line outside it is refused with its
// number and what to write instead. That covers what the two would read differently:
//
//   - an inline comment ("VALUE # note"): systemd keeps "# note" in the value;
//   - a backslash in an unquoted value: systemd drops it, and a trailing one joins the next line;
//   - in double quotes, any escape but \" \\ \$ \` (systemd keeps "\t" as backslash and t,
//     a docker compose env file makes it a tab), and a trailing backslash;
//   - text or a comment after a closing quote: systemd appends it to the value;
//   - a comment line ending in a backslash: systemd swallows the next line into the comment;
//   - "export KEY=", a line without "=", an invalid name: systemd ignores the line;
//   - control characters and invalid UTF-8, which systemd refuses.
//
// Comment lines start with # or ; (as for systemd). No variable is expanded.
package configfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"
)

// File is a config file as read.
type File struct {
	Path   string
	Mode   fs.FileMode // permission bits
	Values map[string]string
	lines  map[string]int
}

// Line is the line that set key (0 when unset).
func (f *File) Line(key string) int { return f.lines[key] }

// SyntaxError names the line of the file that cht-backup and systemd would read differently,
// or that is no setting at all. It never quotes the value, which may be a passphrase.
type SyntaxError struct {
	Path   string
	Line   int
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("config file %s line %d: %s", e.Path, e.Line, e.Reason)
}

// Read reads and parses the config file at path. A missing file is an error wrapping
// fs.ErrNotExist.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%w", pe.Err)
		}
		return nil, fmt.Errorf("cannot read config file %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config file %s: %w", path, err)
	}
	f, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	f.Mode = st.Mode().Perm()
	return f, nil
}

// Parse parses the text of a config file; path only names it in errors.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path, Values: map[string]string{}, lines: map[string]int{}}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, &SyntaxError{path, 1, "the file starts with a byte-order mark, which systemd reads as part of the first name; save it as plain UTF-8"}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		key, value, ok, reason := parseLine(line)
		if reason != "" {
			return nil, &SyntaxError{path, n, reason}
		}
		if ok {
			f.Values[key] = value
			f.lines[key] = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &SyntaxError{path, n + 1, "the line is too long (over 1 MiB) or unreadable"}
	}
	return f, nil
}

// parseLine reads one line. ok is false for blank and comment lines; reason says why a line is
// refused.
func parseLine(line string) (key, value string, ok bool, reason string) {
	if !utf8.ValidString(line) {
		return "", "", false, "the line is not valid UTF-8, which systemd refuses; save the file as UTF-8"
	}
	s := strings.TrimLeft(line, " \t")
	if s == "" {
		return "", "", false, ""
	}
	if s[0] == '#' || s[0] == ';' {
		if strings.HasSuffix(s, `\`) {
			return "", "", false, "a comment line ends in a backslash, so systemd would read the next line as part of the comment; remove the backslash"
		}
		return "", "", false, ""
	}
	if strings.HasPrefix(s, "export ") || strings.HasPrefix(s, "export\t") {
		return "", "", false, `"export " before the name makes systemd ignore the line; remove "export "`
	}
	name, raw, hasEq := strings.Cut(s, "=")
	name = strings.TrimRight(name, " \t")
	if !hasEq {
		return "", "", false, "expected NAME=VALUE (a line without \"=\" is ignored by systemd); add the value or comment the line out with #"
	}
	if !validName(name) {
		return "", "", false, "the name before \"=\" is not a valid variable name (letters, digits and _, not starting with a digit)"
	}
	raw = strings.TrimLeft(raw, " \t")
	if raw != "" && (raw[0] == '\'' || raw[0] == '"') {
		value, reason = quoted(name, raw)
	} else {
		value, reason = unquoted(name, raw)
	}
	if reason != "" {
		return "", "", false, reason
	}
	for _, r := range value {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return "", "", false, "the value of " + name + " holds a control character, which systemd refuses; remove it"
		}
	}
	return name, value, true, ""
}

func unquoted(name, raw string) (string, string) {
	if strings.Contains(raw, `\`) {
		return "", "the value of " + name + ` holds a backslash, which systemd drops from an unquoted value (and a trailing one joins the next line); put the value in single quotes`
	}
	for i := 1; i < len(raw); i++ {
		if raw[i] == '#' && (raw[i-1] == ' ' || raw[i-1] == '\t') {
			return "", "the value of " + name + ` is followed by a "#" comment, which systemd reads as part of the value; put the comment on a line of its own`
		}
	}
	return strings.TrimRight(raw, " \t"), ""
}

func quoted(name, raw string) (string, string) {
	q := raw[0]
	var b strings.Builder
	i := 1
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == q {
			break
		}
		if q == '"' && c == '\\' {
			if i+1 == len(raw) {
				return "", "the value of " + name + " ends in a backslash inside double quotes, which joins the next line for systemd; remove it or double it (\\\\)"
			}
			switch next := raw[i+1]; next {
			case '"', '\\', '$', '`':
				b.WriteByte(next)
				i++
				continue
			default:
				return "", fmt.Sprintf("the value of %s holds \\%c in double quotes: systemd keeps the backslash, a docker compose env file reads an escape; write the character itself, or use single quotes", name, next)
			}
		}
		b.WriteByte(c)
	}
	if i == len(raw) {
		return "", "the quote that opens the value of " + name + " is not closed on the same line; close it (a value cannot span lines)"
	}
	if rest := strings.TrimLeft(raw[i+1:], " \t"); rest != "" {
		if rest[0] == '#' {
			return "", "a comment follows the closing quote of " + name + ", which systemd appends to the value; put the comment on a line of its own"
		}
		return "", "text follows the closing quote of " + name + ", which systemd appends to the value; put the whole value inside the quotes"
	}
	return b.String(), ""
}

func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
