package sources

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// ParseEnvFile reads a docker compose env file exactly as docker compose does, with compose's
// own parser: comments, blank lines, "export " prefixes, quotes (single quotes literal, double
// quotes with escapes), values spanning lines, " #comment" after unquoted values, ${VAR}
// interpolation from earlier lines. A line holding a key without "=" is ignored (compose would
// look it up in the environment of whoever ran it, which we do not have); references to such
// outside variables are therefore unset, as compose treats an unset variable.
//
// Errors name the file and line but never a value: the file holds the CouchDB admin password,
// and compose's own error text quotes the line.
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

// envSyntaxError locates a line compose rejects without quoting it.
type envSyntaxError struct {
	line   int
	reason string
}

func (e *envSyntaxError) Error() string {
	return fmt.Sprintf("line %d: %s; fix that line (values are not shown because they may be secret)", e.line, e.reason)
}

func parseEnv(data []byte) (map[string]string, error) {
	env, err := composeParse(data)
	if err == nil {
		return env, nil
	}
	return nil, &envSyntaxError{line: rejectedLine(data), reason: envErrorReason(err)}
}

// composeParse is compose's reading of one env file; no outside variable is known.
func composeParse(data []byte) (map[string]string, error) {
	return dotenv.ParseWithLookup(bytes.NewReader(data), func(string) (string, bool) { return "", false })
}

// rejectedLine finds the line compose rejects: the line after the longest run of leading lines
// that compose accepts. Compose's own line numbers count from 0 for some errors and from the end
// of a quoted value for others, and its message quotes the line, so neither is passed on.
func rejectedLine(data []byte) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	for k := len(lines) - 1; k > 0; k-- {
		if _, err := composeParse(bytes.Join(lines[:k], nil)); err == nil {
			return k + 1
		}
	}
	return 1
}

// envErrorReason says, in our words and without the value, what compose objected to.
func envErrorReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unterminated quoted value"):
		return "a quote opened here is never closed"
	case strings.Contains(msg, "in variable name"):
		return "invalid variable name before \"=\" (letters, digits, _ . - only)"
	case strings.Contains(msg, "key cannot contain a space"):
		return "expected KEY=VALUE (a variable name holds no spaces)"
	case strings.Contains(msg, "variable") || strings.Contains(msg, "substitution"):
		return "a ${...} reference that compose cannot substitute"
	default:
		return "docker compose cannot read this line"
	}
}

// unwrapPathError keeps the cause of an *os.PathError without repeating the path.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
