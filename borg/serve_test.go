package borg

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

func serveHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServeEncode(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, "c0"},
		{"false", false, "c2"},
		{"true", true, "c3"},
		{"positive fixint", 5, "05"},
		{"fixint max", 127, "7f"},
		{"uint8", 200, "ccc8"},
		{"uint16", 0x1234, "cd1234"},
		{"uint32", 0x12345678, "ce12345678"},
		{"uint64", int64(1) << 40, "cf0000010000000000"},
		{"negative fixint", -1, "ff"},
		{"negative fixint min", -32, "e0"},
		{"int8", -100, "d09c"},
		{"int16", -1000, "d1fc18"},
		{"int32", -100000, "d2fffe7960"},
		{"int64", int64(-1) << 40, "d3ffffff0000000000"},
		{"fixstr", "abc", "a3616263"},
		{"str16 (old spec, no str8)", strings.Repeat("x", 32), "da0020" + strings.Repeat("78", 32)},
		{"bytes as raw", []byte{1, 2}, "a20102"},
		{"fixarray", []any{1, "a"}, "9201a161"},
		{"array16", make([]any, 16), "dc0010" + strings.Repeat("c0", 16)},
		{"fixmap sorted", map[string]any{"b": 2, "a": 1}, "82a16101a16202"},
		// Bytes packed by borg 1.2.4's own client (borg.helpers.msgpack.packb).
		{"negotiate request as borg sends it",
			[]any{1, 1, "negotiate", []any{map[string]any{"client_version": []any{1, 2, 4, -1}}}},
			"940101a96e65676f74696174659181ae636c69656e745f76657273696f6e94010204ff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hex.EncodeToString(serveEncode(nil, tt.in))
			if got != tt.want {
				t.Errorf("serveEncode(%#v) = %s, want %s", tt.in, got, tt.want)
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
		{"uint8", "ccff", int64(255)},
		{"uint16", "cdffff", int64(65535)},
		{"uint32", "ceffffffff", int64(4294967295)},
		{"uint64 above int64", "cfffffffffffffffff", uint64(1<<64 - 1)},
		{"int8", "d080", int64(-128)},
		{"int16", "d18000", int64(-32768)},
		{"int32", "d280000000", int64(-2147483648)},
		{"int64", "d3fffffffffffffffe", int64(-2)},
		{"fixstr", "a3616263", "abc"},
		{"str8", "d903616263", "abc"},
		{"str16", "da0003616263", "abc"},
		{"str32", "db00000003616263", "abc"},
		{"bin8", "c4020102", []byte{1, 2}},
		{"bin16", "c500020102", []byte{1, 2}},
		{"bin32", "c6000000020102", []byte{1, 2}},
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
			d := serveDecoder{r: bytes.NewReader(serveHex(t, tt.in))}
			got, err := d.value(0)
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
		{"truncated array", "9301", "unexpected EOF"},
		{"truncated string", "a5616263", "unexpected EOF"},
		{"huge string", "dbffffffff", "too long"},
		{"huge array", "ddffffffff", "array too long"},
		{"integer map key", "810101", "map key"},
		{"ext type", "d40100", "unsupported msgpack type"},
		{"deep nesting", strings.Repeat("91", 40) + "c0", "too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := serveDecoder{r: bytes.NewReader(serveHex(t, tt.in))}
			_, err := d.value(0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decode %s: error %v, want it to contain %q", tt.in, err, tt.want)
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
		{"borg 1.0 protocol", serveEncode(nil, []any{1, 1, nil, 2}), "", "too old"},
		{"wrong message id", serveEncode(nil, []any{1, 7, nil, map[string]any{}}), "", "message id"},
		{"no server_version", serveEncode(nil, []any{1, 1, nil, map[string]any{"x": 1}}), "", "no server_version"},
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

// TestServeVersionLocalBorg talks to a real `borg serve` over pipes, as the
// SSH pre-flight does over a session's stdin and stdout.
func TestServeVersionLocalBorg(t *testing.T) {
	out, err := exec.Command("borg", "--version").Output()
	if err != nil {
		t.Fatalf("borg --version: %v (borg must be installed for this test)", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		t.Fatalf("unexpected borg --version output %q", out)
	}
	want := fields[1]

	cmd := exec.Command("borg", "serve")
	cmd.Env = append(cmd.Environ(), "BORG_BASE_DIR="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		// borg serve exits on EOF; drain so it cannot block on a full pipe.
		io.Copy(io.Discard, stdout)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("borg serve did not exit after stdin was closed")
		}
	}()

	type result struct {
		v   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := ServeVersion(stdout, stdin)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("ServeVersion: %v (stderr: %s)", r.err, stderr.String())
		}
		if r.v != want {
			t.Errorf("ServeVersion = %q, borg --version says %q", r.v, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer from borg serve within 30s")
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
