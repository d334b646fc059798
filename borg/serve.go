package borg

// This file asks a `borg serve` process for its version through borg's own
// RPC. A hardened backup server forces our key to `borg serve`, so
// `borg --version` cannot run there, but borg's RPC still answers `negotiate`.
//
// The protocol (borg/remote.py, 1.x): the client's first message uses the
// legacy format, the msgpack array [1, msgid, "negotiate", [client_data]]
// with client_data = {"client_version": (major, minor, patch, -1)}. The
// server answers [1, msgid, null, {"server_version": (…)}], or
// [1, msgid, "ExceptionClass", "text"] when the call failed. borg packs with
// the old msgpack spec (use_bin_type=False), so strings arrive as raw str;
// we send ours the same way.
//
// msgpack itself is github.com/vmihailenco/msgpack/v5. Every unexported name
// carries a `serve` prefix because other files of this package are written
// independently.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/vmihailenco/msgpack/v5"
)

// serveMsgID is the id of our one and only request.
const serveMsgID = 1

// serveClientVersion is what we announce; borg only records it.
var serveClientVersion = []int64{1, 2, 4, -1}

// serveMaxAnswer caps what we read of an answer (a negotiate answer is tens of
// bytes, an exception with its traceback a few KiB), so a hostile or confused
// peer cannot make us allocate much or nest deeply.
const serveMaxAnswer = 64 << 10

var errServeTooLong = fmt.Errorf("answer longer than %d bytes", serveMaxAnswer)

// ServeVersion sends borg's RPC `negotiate` call to a `borg serve` process
// over w and reads its answer from r. It returns the server's version in
// borg's own spelling ("1.2.4", "1.4.0b2").
//
// It reads exactly one answer and leaves r and w open; closing them (which
// makes borg serve exit) and any timeout are the caller's business.
func ServeVersion(r io.Reader, w io.Writer) (string, error) {
	req, err := serveNegotiateRequest()
	if err != nil {
		return "", fmt.Errorf("encoding the borg RPC request: %w", err)
	}
	if _, err := w.Write(req); err != nil {
		return "", fmt.Errorf("sending the borg RPC request: %w", err)
	}

	br := bufio.NewReader(r)
	first, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", errors.New("borg serve closed the connection without answering: borg may be missing on the server or this key may not be allowed to run it")
		}
		return "", fmt.Errorf("reading the borg RPC answer: %w", err)
	}
	// An answer is an array (legacy format) or a map (dict format); anything
	// else is not borg, typically a shell banner or an error text.
	if !serveIsArrayOrMap(first[0]) {
		return "", serveNotBorg(br)
	}
	v, err := serveDecode(br)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", errors.New("borg serve closed the connection in the middle of its answer")
		}
		return "", fmt.Errorf("the answer is not borg's RPC protocol: %w", err)
	}
	return serveParseAnswer(v)
}

// serveNotBorg builds the error for a non-msgpack answer and quotes what was
// already received, without waiting for more.
func serveNotBorg(br *bufio.Reader) error {
	n := br.Buffered()
	if n > 80 {
		n = 80
	}
	head, _ := br.Peek(n)
	text := strings.TrimSpace(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, string(head)))
	return fmt.Errorf("the server did not answer in borg's RPC protocol but sent %q: check that the key runs `borg serve` and the login prints nothing", text)
}

func serveIsArrayOrMap(b byte) bool {
	return b&0xf0 == 0x90 || b&0xf0 == 0x80 || b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf
}

// serveParseAnswer checks the shape of the negotiate answer and extracts the
// version.
func serveParseAnswer(v any) (string, error) {
	var result any
	switch a := v.(type) {
	case []any:
		if len(a) != 4 {
			return "", fmt.Errorf("unexpected borg RPC answer: array of %d items instead of 4", len(a))
		}
		if id, ok := serveInt(a[1]); !ok || id != serveMsgID {
			return "", fmt.Errorf("unexpected borg RPC answer: message id %v instead of %d", a[1], serveMsgID)
		}
		if a[2] != nil {
			return "", fmt.Errorf("borg serve refused the negotiate call: %s: %s", serveText(a[2]), serveText(a[3]))
		}
		result = a[3]
	case map[string]any: // dict format, in case a future server answers in it
		if exc, ok := a["exception_class"]; ok {
			return "", fmt.Errorf("borg serve refused the negotiate call: %s", serveText(exc))
		}
		r, ok := a["r"]
		if !ok {
			return "", errors.New("unexpected borg RPC answer: a map without a result")
		}
		result = r
	default:
		return "", fmt.Errorf("unexpected borg RPC answer of type %T", v)
	}

	if n, ok := serveInt(result); ok && n == 2 {
		return "", errors.New("borg serve on the server speaks RPC protocol 2 (borg 1.0.x), which is too old: upgrade borg on the server")
	}
	m, ok := result.(map[string]any)
	if !ok {
		return "", fmt.Errorf("unexpected negotiate result of type %T", result)
	}
	parts, ok := m["server_version"].([]any)
	if !ok {
		return "", errors.New("the negotiate result carries no server_version")
	}
	return serveFormatVersion(parts)
}

// serveFormatVersion turns borg's version tuple (see borg.version.parse_version)
// back into a string: (1, 2, 4, -1) is "1.2.4", (1, 4, 0, -3, 2) is "1.4.0b2".
func serveFormatVersion(parts []any) (string, error) {
	var nums []string
	suffix := ""
	for i := 0; i < len(parts); i++ {
		n, ok := serveInt(parts[i])
		if !ok {
			return "", fmt.Errorf("server_version holds a non-integer %v", parts[i])
		}
		if n >= 0 {
			nums = append(nums, strconv.FormatInt(n, 10))
			continue
		}
		// A negative marks the end: -1 final, -4/-3/-2 alpha/beta/rc + number.
		tag := map[int64]string{-4: "a", -3: "b", -2: "rc"}[n]
		if tag != "" && i+1 < len(parts) {
			if p, ok := serveInt(parts[i+1]); ok && p >= 0 {
				suffix = tag + strconv.FormatInt(p, 10)
			}
		}
		break
	}
	if len(nums) == 0 {
		return "", errors.New("server_version holds no version number")
	}
	return strings.Join(nums, ".") + suffix, nil
}

func serveInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}

func serveText(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// serveNegotiateRequest packs [1, msgid, "negotiate", [{"client_version": (…)}]]
// as borg 1.x's own client does: integers in their shortest form, strings as
// old-spec raw str.
func serveNegotiateRequest() ([]byte, error) {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	err := errors.Join(
		e.EncodeArrayLen(4), e.EncodeInt(1), e.EncodeInt(serveMsgID), serveEncodeRaw(e, "negotiate"),
		e.EncodeArrayLen(1), e.EncodeMapLen(1), serveEncodeRaw(e, "client_version"),
		e.EncodeArrayLen(len(serveClientVersion)))
	for _, n := range serveClientVersion {
		err = errors.Join(err, e.EncodeInt(n))
	}
	return buf.Bytes(), err
}

// serveEncodeRaw writes s in the old msgpack spec's raw str family (fixstr,
// str16, str32: no str8, which an old-spec reader does not know). The library
// follows the new spec, so the header is written here and the bytes as a
// RawMessage.
func serveEncodeRaw(e *msgpack.Encoder, s string) error {
	var b []byte
	switch n := len(s); {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return e.Encode(msgpack.RawMessage(append(b, s...)))
}

// serveDecode reads one msgpack value, read loosely: integers as int64 (uint64
// above MaxInt64), str and bin both as string (borg's old-spec packer sends
// bytes as str), arrays as []any, maps as map[string]any.
//
// The library sizes a slice by the count an array header claims, so the value
// is first skipped over (which allocates nothing) while its bytes are kept, up
// to serveMaxAnswer; only bytes that hold a whole value are then decoded.
func serveDecode(r io.Reader) (any, error) {
	var seen bytes.Buffer
	capped := &serveCappedReader{r: r, left: serveMaxAnswer}
	if err := msgpack.NewDecoder(io.TeeReader(capped, &seen)).Skip(); err != nil {
		if errors.Is(err, errServeTooLong) {
			return nil, errServeTooLong
		}
		return nil, err
	}
	d := msgpack.NewDecoder(&seen)
	d.UseLooseInterfaceDecoding(true)
	return d.DecodeInterfaceLoose()
}

// serveCappedReader ends a read past its cap with errServeTooLong, not EOF, so
// an overlong answer is not mistaken for one cut short.
type serveCappedReader struct {
	r    io.Reader
	left int
}

func (c *serveCappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errServeTooLong
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}
