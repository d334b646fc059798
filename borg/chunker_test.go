package borg

import "testing"

func TestParseChunkerParams(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "buzhash,14,18,16,4095", want: "buzhash,14,18,16,4095"},
		{in: " buzhash,19,23,21,4095 ", want: BorgDefaultChunkerParams},
		{in: "default", want: BorgDefaultChunkerParams},
		{in: "19,23,21,4095", want: BorgDefaultChunkerParams}, // borg 1.1's form
		{in: "fixed,4194304", want: "fixed,4194304"},
		{in: "fixed,4194304,4096", want: "fixed,4194304,4096"},
		{in: "fixed,4194304,0", want: "fixed,4194304,0"}, // no header: borg's default
		{in: "fixed,64", want: "fixed,64"},               // the smallest block size
		{in: "fixed,8388608", want: "fixed,8388608"},     // the largest: 8 MiB
		{in: "fixed,63", bad: true},
		{in: "fixed,8388609", bad: true},
		{in: "fixed,4096,-1", bad: true},
		{in: "buzhash,14,18,19,4095", bad: true}, // mask above max
		{in: "buzhash,17,16,16,4095", bad: true}, // min above max
		{in: "buzhash,14,24,16,4095", bad: true}, // max above 23
		{in: "buzhash,14,18,16,4096", bad: true}, // even window
		{in: "buzhash,14,18,16", bad: true},
		{in: "rabin,14,18,16,4095", bad: true},
		{in: "buzhash,a,18,16,4095", bad: true},
		{in: "fixed", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseChunkerParams(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseChunkerParams(%q) = %q, %v; want %q, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestLastArchiveChunkerParams(t *testing.T) {
	tests := []struct {
		name, out, want string
		ok, bad         bool
	}{
		{"borg 1.2 archive", `{"archives":[{"name":"a","chunker_params":["buzhash",19,23,21,4095]}]}`, BorgDefaultChunkerParams, true, false},
		{"small chunks", `{"archives":[{"name":"a","chunker_params":["buzhash",14,18,16,4095]}]}`, CouchDBChunkerParams, true, false},
		{"borg 1.1 archive without the algorithm", `{"archives":[{"name":"a","chunker_params":[19,23,21,4095]}]}`, BorgDefaultChunkerParams, true, false},
		{"empty repository", `{"archives":[]}`, "", false, false},
		{"no params said", `{"archives":[{"name":"a"}]}`, "", false, true},
		{"not JSON", `borg: error`, "", false, true},
	}
	for _, tt := range tests {
		got, ok, err := LastArchiveChunkerParams([]byte(tt.out))
		if got != tt.want || ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("%s: got %q, %v, %v", tt.name, got, ok, err)
		}
	}
}
