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
// the old msgpack spec (use_bin_type=False), so strings arrive as raw str.
//
// Only the msgpack subset this exchange needs is implemented here, to keep
// the dependency list short. Every unexported name carries a `serve` prefix
// because other files of this package are written independently.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// serveMsgID is the id of our one and only request.
const serveMsgID = 1

// serveClientVersion is what we announce; borg only records it.
var serveClientVersion = []any{1, 2, 4, -1}

// Limits keep a hostile or confused peer from making us allocate much.
const (
	serveMaxBytes = 1 << 20
	serveMaxItems = 1 << 12
	serveMaxDepth = 16
)

// ServeVersion sends borg's RPC `negotiate` call to a `borg serve` process
// over w and reads its answer from r. It returns the server's version in
// borg's own spelling ("1.2.4", "1.4.0b2").
//
// It reads exactly one answer and leaves r and w open; closing them (which
// makes borg serve exit) and any timeout are the caller's business.
func ServeVersion(r io.Reader, w io.Writer) (string, error) {
	req := serveEncode(nil, []any{1, serveMsgID, "negotiate", []any{
		map[string]any{"client_version": serveClientVersion},
	}})
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
	d := serveDecoder{r: br}
	v, err := d.value(0)
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

// serveEncode appends the msgpack form of v to b. It knows nil, bool, Go
// integers, string, []byte, []any and map[string]any (keys sorted, so the
// output is deterministic). Strings and bytes use the raw str family without
// str8, as borg's own old-spec packer does.
func serveEncode(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0)
	case bool:
		if x {
			return append(b, 0xc3)
		}
		return append(b, 0xc2)
	case int:
		return serveEncodeInt(b, int64(x))
	case int64:
		return serveEncodeInt(b, x)
	case uint64:
		if x > math.MaxInt64 {
			return binary.BigEndian.AppendUint64(append(b, 0xcf), x)
		}
		return serveEncodeInt(b, int64(x))
	case string:
		return append(serveRawHeader(b, len(x)), x...)
	case []byte:
		return append(serveRawHeader(b, len(x)), x...)
	case []any:
		b = serveCountHeader(b, len(x), 0x90, 0xdc)
		for _, e := range x {
			b = serveEncode(b, e)
		}
		return b
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = serveCountHeader(b, len(x), 0x80, 0xde)
		for _, k := range keys {
			b = serveEncode(b, k)
			b = serveEncode(b, x[k])
		}
		return b
	}
	panic(fmt.Sprintf("serveEncode: unsupported type %T", v))
}

func serveEncodeInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= 0x7f:
		return append(b, byte(n))
	case n >= -32 && n < 0:
		return append(b, byte(n)) // negative fixint: 0xe0..0xff
	case n >= 0 && n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n >= 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n >= 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

func serveRawHeader(b []byte, n int) []byte {
	switch {
	case n <= 31:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
}

// serveCountHeader writes an array or map header; fix is 0x90 or 0x80 and
// code16 is the 16-bit form (0xdc, 0xde), whose 32-bit form follows it.
func serveCountHeader(b []byte, n int, fix, code16 byte) []byte {
	switch {
	case n <= 15:
		return append(b, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, code16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, code16+1), uint32(n))
}

// serveDecoder reads msgpack values. Integers decode to int64 (uint64 only
// above MaxInt64), str to string, bin to []byte, arrays to []any and maps to
// map[string]any (str or bin keys only).
type serveDecoder struct {
	r io.Reader
}

func (d *serveDecoder) read(n int) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

func (d *serveDecoder) uint(n int) (uint64, error) {
	b, err := d.read(n)
	if err != nil {
		return 0, err
	}
	var u uint64
	for _, c := range b {
		u = u<<8 | uint64(c)
	}
	return u, nil
}

func (d *serveDecoder) value(depth int) (any, error) {
	if depth > serveMaxDepth {
		return nil, errors.New("msgpack nesting too deep")
	}
	var c [1]byte
	if _, err := io.ReadFull(d.r, c[:]); err != nil {
		return nil, err // a clean io.EOF here means no value at all
	}
	b := c[0]
	switch {
	case b <= 0x7f:
		return int64(b), nil
	case b >= 0xe0:
		return int64(int8(b)), nil
	case b&0xf0 == 0x80:
		return d.mapItems(int(b&0x0f), depth)
	case b&0xf0 == 0x90:
		return d.arrayItems(int(b&0x0f), depth)
	case b&0xe0 == 0xa0:
		return d.raw(uint64(b & 0x1f))
	}
	switch b {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		n, err := d.uint(1 << (b - 0xc4))
		if err != nil {
			return nil, err
		}
		s, err := d.raw(n)
		if err != nil {
			return nil, err
		}
		return []byte(s.(string)), nil
	case 0xca:
		u, err := d.uint(4)
		return float64(math.Float32frombits(uint32(u))), err
	case 0xcb:
		u, err := d.uint(8)
		return math.Float64frombits(u), err
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8/16/32/64
		u, err := d.uint(1 << (b - 0xcc))
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8/16/32/64
		size := 1 << (b - 0xd0)
		u, err := d.uint(size)
		if err != nil {
			return nil, err
		}
		shift := 64 - 8*size // sign-extend
		return int64(u<<shift) >> shift, nil
	case 0xd9, 0xda, 0xdb: // str 8/16/32
		n, err := d.uint(1 << (b - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.raw(n)
	case 0xdc, 0xdd:
		n, err := d.uint(2 << (b - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.arrayItems(int(min(n, serveMaxItems+1)), depth)
	case 0xde, 0xdf:
		n, err := d.uint(2 << (b - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapItems(int(min(n, serveMaxItems+1)), depth)
	}
	return nil, fmt.Errorf("unsupported msgpack type byte 0x%02x", b)
}

func (d *serveDecoder) raw(n uint64) (any, error) {
	if n > serveMaxBytes {
		return nil, fmt.Errorf("msgpack string of %d bytes is too long", n)
	}
	b, err := d.read(int(n))
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func (d *serveDecoder) arrayItems(n, depth int) (any, error) {
	if n > serveMaxItems {
		return nil, errors.New("msgpack array too long")
	}
	a := make([]any, 0, n)
	for i := 0; i < n; i++ {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, serveUnexpectedEOF(err)
		}
		a = append(a, v)
	}
	return a, nil
}

func (d *serveDecoder) mapItems(n, depth int) (any, error) {
	if n > serveMaxItems {
		return nil, errors.New("msgpack map too long")
	}
	m := make(map[string]any, n)
	for i := 0; i < n; i++ {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, serveUnexpectedEOF(err)
		}
		var key string
		switch kk := k.(type) {
		case string:
			key = kk
		case []byte:
			key = string(kk)
		default:
			return nil, fmt.Errorf("unsupported msgpack map key of type %T", k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, serveUnexpectedEOF(err)
		}
		m[key] = v
	}
	return m, nil
}

// serveUnexpectedEOF turns a clean EOF inside a container into a truncation.
func serveUnexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
