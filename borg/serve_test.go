package borg

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func serveMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serveHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServeNegotiateRequest(t *testing.T) {
	got, err := serveNegotiateRequest()
	if err != nil {
		t.Fatal(err)
	}
	// Bytes packed by borg 1.2.4's own client (borg.helpers.msgpack.packb).
	if want := "940101a96e65676f74696174659181ae636c69656e745f76657273696f6e94010204ff"; hex.EncodeToString(got) != want {
		t.Errorf("request = %x, want %s", got, want)
	}
}

func TestServeEncodeRawOldSpec(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "a0"},
		{"fixstr", "abc", "a3616263"},
		{"fixstr max", strings.Repeat("x", 31), "bf" + strings.Repeat("78", 31)},
		{"str16, never str8", strings.Repeat("x", 32), "da0020" + strings.Repeat("78", 32)},
		{"str32", strings.Repeat("x", 1<<16), "db00010000" + strings.Repeat("78", 1<<16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := serveEncodeRaw(msgpack.NewEncoder(&buf), tt.in); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(buf.Bytes()); got != tt.want {
				t.Errorf("serveEncodeRaw(%d bytes) = %.20s…, want %.20s…", len(tt.in), got, tt.want)
			}
		})
	}
}

func TestServeDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
	}{
		{"nil", "c0", nil},
		{"bools", "92c2c3", []any{false, true}},
		{"positive fixint", "2a", int64(42)},
		{"negative fixint", "ff", int64(-1)},
		{"uint8", "ccff", uint64(255)},
		{"uint16", "cdffff", uint64(65535)},
		{"uint32", "ceffffffff", uint64(4294967295)},
		{"uint64 above int64", "cfffffffffffffffff", uint64(1<<64 - 1)},
		{"int8", "d080", int64(-128)},
		{"int16", "d18000", int64(-32768)},
		{"int32", "d280000000", int64(-2147483648)},
		{"int64", "d3fffffffffffffffe", int64(-2)},
		{"fixstr", "a3616263", "abc"},
		{"str8", "d903616263", "abc"},
		{"str16", "da0003616263", "abc"},
		{"str32", "db00000003616263", "abc"},
		// borg's old-spec packer and a new-spec one differ only in str versus bin
		{"bin8", "c4020102", "\x01\x02"},
		{"bin16", "c500020102", "\x01\x02"},
		{"bin32", "c6000000020102", "\x01\x02"},
		{"array16", "dc0002c0c3", []any{nil, true}},
		{"array32", "dd00000001c0", []any{nil}},
		{"map with str and bin keys", "82a16101c4016202", map[string]any{"a": int64(1), "b": int64(2)}},
		{"map16", "de0001a16101", map[string]any{"a": int64(1)}},
		{"float64", "cb3ff8000000000000", 1.5},
		{"negotiate answer from borg 1.2.4", "940101c081ae7365727665725f76657273696f6e94010204ff",
			[]any{int64(1), int64(1), nil, map[string]any{"server_version": []any{int64(1), int64(2), int64(4), int64(-1)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serveDecode(bytes.NewReader(serveHex(t, tt.in)))
			if err != nil {
				t.Fatalf("decode %s: %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decode %s = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestServeDecodeRejects(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"truncated array", "9301", "EOF"},
		{"truncated string", "a5616263", "EOF"},
		{"huge string, cut short", "dbffffffff", "EOF"},
		{"huge string", "dbffffffff" + strings.Repeat("78", 70000), "longer than 65536 bytes"},
		{"huge array", "ddffffffff" + strings.Repeat("c0", 70000), "longer than 65536 bytes"},
		{"deep nesting", strings.Repeat("91", 70000) + "c0", "longer than 65536 bytes"},
		{"integer map key", "810101", "msgpack"},
		{"ext type", "d40100", "ext"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := serveDecode(bytes.NewReader(serveHex(t, tt.in)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decode %.20s…: error %v, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestServeVersionAnswers(t *testing.T) {
	tests := []struct {
		name    string
		answer  []byte
		want    string
		wantErr string
	}{
		{"borg 1.2.4", serveHex(t, "940101c081ae7365727665725f76657273696f6e94010204ff"), "1.2.4", ""},
		{"beta version, dict format", serveHex(t, "82a16901a17281ae7365727665725f76657273696f6e95010400fd02"), "1.4.0b2", ""},
		{"bin key", serveHex(t, "940101c081c40e"+hex.EncodeToString([]byte("server_version"))+"94010401ff"), "1.4.1", ""},
		{"remote exception", serveHex(t, "940101ae506174684e6f74416c6c6f776564b052656d6f746520457863657074696f6e"), "", "refused the negotiate call: PathNotAllowed"},
		{"borg 1.0 protocol", serveMarshal(t, []any{1, 1, nil, 2}), "", "too old"},
		{"wrong message id", serveMarshal(t, []any{1, 7, nil, map[string]any{}}), "", "message id"},
		{"no server_version", serveMarshal(t, []any{1, 1, nil, map[string]any{"x": 1}}), "", "no server_version"},
		{"shell prompt", []byte("borg@backup:~$ "), "", `sent "borg@backup:~$"`},
		{"error text", []byte("This account is currently not available.\n"), "", "did not answer in borg's RPC protocol"},
		{"nothing", nil, "", "closed the connection without answering"},
		{"cut short", serveHex(t, "940101c081ae7365727665"), "", "in the middle of its answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent bytes.Buffer
			got, err := ServeVersion(bytes.NewReader(tt.answer), &sent)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ServeVersion = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans several lines: %q", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ServeVersion = %q, %v; want %q", got, err, tt.want)
			}
			if want := "940101a96e65676f74696174659181ae636c69656e745f76657273696f6e94010204ff"; hex.EncodeToString(sent.Bytes()) != want {
				t.Errorf("request = %x, want %s", sent.Bytes(), want)
			}
		})
	}
}

func TestServeVersionWriteError(t *testing.T) {
	_, err := ServeVersion(strings.NewReader(""), serveFailingWriter{})
	if err == nil || !strings.Contains(err.Error(), "sending the borg RPC request") {
		t.Fatalf("err = %v", err)
	}
}

type serveFailingWriter struct{}

func (serveFailingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// borg's version tuple back to the version the server's borg reports: final, alpha, beta and
// release candidates, with or without the closing marker.
func TestServeFormatVersion(t *testing.T) {
	for _, tt := range []struct {
		parts []any
		want  string
	}{
		{[]any{int64(1), int64(2), int64(4), int64(-1)}, "1.2.4"},
		{[]any{int64(1), int64(2), int64(4)}, "1.2.4"},
		{[]any{int64(1), int64(4), int64(0), int64(-4), int64(1)}, "1.4.0a1"},
		{[]any{int64(1), int64(4), int64(0), int64(-3), uint64(2)}, "1.4.0b2"},
		{[]any{int64(1), int64(4), int64(0), int64(-2), int64(0)}, "1.4.0rc0"},
		{[]any{int64(2), int64(0), int64(0), int64(-2)}, "2.0.0"},
	} {
		if got, err := serveFormatVersion(tt.parts); err != nil || got != tt.want {
			t.Errorf("%v: %q, %v; want %q", tt.parts, got, err, tt.want)
		}
	}
	for _, bad := range [][]any{{int64(-1)}, {"1", int64(2)}} {
		if got, err := serveFormatVersion(bad); err == nil {
			t.Errorf("%v: %q, want an error", bad, got)
		}
	}
}
