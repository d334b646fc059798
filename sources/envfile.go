package sources

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// ParseEnvFile reads a docker compose env file: blank lines and lines starting
// with # are skipped, an "export " prefix is dropped, single-quoted values are
// literal, double-quoted values understand \n \r \t \" and \\, quoted values
// may span lines, and unquoted values lose a trailing " #comment" and
// surrounding whitespace. A line holding a key without "=" is ignored (compose
// would look it up in its own environment, which we do not have). A later
// assignment of a key wins. Variables are not interpolated.
//
// Errors name the file and line but never a value: the file holds the
// CouchDB admin password.
func ParseEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read env file %s: %w", path, unwrapPathError(err))
	}
	env, err := parseEnv(data)
	if err != nil {
		return nil, fmt.Errorf("env file %s %w", path, err)
	}
	return env, nil
}

// envSyntaxError locates a syntax error without quoting the line.
type envSyntaxError struct {
	line   int
	reason string
}

func (e *envSyntaxError) Error() string {
	return fmt.Sprintf("line %d: %s; fix that line (values are not shown because they may be secret)", e.line, e.reason)
}

func parseEnv(data []byte) (map[string]string, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	lineNo := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		lineNo++
		return strings.TrimSuffix(sc.Text(), "\r"), true
	}
	for {
		line, ok := next()
		if !ok {
			break
		}
		start := lineNo
		s := strings.TrimLeft(line, " \t")
		if s == "" || s[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(s, "export "); ok {
			s = strings.TrimLeft(rest, " \t")
		}
		key, raw, hasEq := strings.Cut(s, "=")
		key = strings.TrimSpace(key)
		if !hasEq {
			if !validEnvKey(key) {
				return nil, &envSyntaxError{start, "expected KEY=VALUE"}
			}
			continue
		}
		if !validEnvKey(key) {
			return nil, &envSyntaxError{start, "invalid variable name before \"=\""}
		}
		raw = strings.TrimLeft(raw, " \t")
		var value string
		switch {
		case raw != "" && (raw[0] == '\'' || raw[0] == '"'):
			q := raw[0]
			body := raw[1:]
			for {
				end := closingQuote(body, q)
				if end >= 0 {
					trail := strings.TrimSpace(body[end+1:])
					if trail != "" && trail[0] != '#' {
						return nil, &envSyntaxError{start, "unexpected text after the closing quote of " + key}
					}
					body = body[:end]
					break
				}
				more, ok := next()
				if !ok {
					return nil, &envSyntaxError{start, "quote opened for " + key + " is never closed"}
				}
				body += "\n" + more
			}
			if q == '"' {
				value = unescapeDouble(body)
			} else {
				value = body
			}
		default:
			value = stripInlineComment(raw)
		}
		env[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, &envSyntaxError{lineNo + 1, "line too long or unreadable"}
	}
	return env, nil
}

// closingQuote finds the quote ending a value; in double quotes a
// backslash escapes the next character.
func closingQuote(s string, q byte) int {
	for i := 0; i < len(s); i++ {
		if q == '"' && s[i] == '\\' {
			i++
			continue
		}
		if s[i] == q {
			return i
		}
	}
	return -1
}

func unescapeDouble(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '"', '\\':
			b.WriteByte(s[i])
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// stripInlineComment drops " #..." (a # after whitespace) as compose does;
// a # inside a word, as in a password, stays.
func stripInlineComment(s string) string {
	for i := 1; i < len(s); i++ {
		if s[i] == '#' && (s[i-1] == ' ' || s[i-1] == '\t') {
			s = s[:i]
			break
		}
	}
	return strings.TrimSpace(s)
}

func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
		default:
			return false
		}
	}
	return true
}

// unwrapPathError keeps the cause of an *os.PathError without repeating the path.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
