package borg

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Chunker parameters decide how borg cuts files into chunks, and so what a night's backup stores.
// CouchDB files grow by appending: with borg's default 2 MiB average chunk, every grown shard file
// stores its last large chunk again, several times the real growth. Smaller chunks store close to
// the growth, at the cost of more chunks in borg's index (memory) per byte of data.

const (
	// BorgDefaultChunkerParams is borg 1.x's own default (2 MiB average chunks).
	BorgDefaultChunkerParams = "buzhash,19,23,21,4095"
	// CouchDBChunkerParams are what new repositories get: 64 KiB average chunks (min 16 KiB,
	// max 256 KiB), chosen by measurement on a real CouchDB (BENCHMARKS.md, scripts/bench.sh).
	CouchDBChunkerParams = "buzhash,14,18,16,4095"
)

// ParseChunkerParams checks a --chunker-params value as borg 1.2/1.4 would and returns its
// canonical form: "buzhash,MIN,MAX,MASK,WINDOW" ("default" and the legacy "MIN,MAX,MASK,WINDOW"
// are accepted), or "fixed,BLOCK[,HEADER]".
func ParseChunkerParams(s string) (string, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("chunker params %q: %s; give buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW (e.g. %s, or %s for borg's default)", s, why, CouchDBChunkerParams, BorgDefaultChunkerParams)
	}
	if s == "default" {
		return BorgDefaultChunkerParams, nil
	}
	parts := strings.Split(s, ",")
	algo := "buzhash"
	if len(parts) > 0 && (parts[0] == "buzhash" || parts[0] == "fixed") {
		algo, parts = parts[0], parts[1:]
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return bad("every value must be a whole number")
		}
		nums[i] = n
	}
	if algo == "fixed" {
		if len(nums) < 1 || len(nums) > 2 || nums[0] < 64 || nums[0] > 1<<23 {
			return bad("fixed takes a block size between 64 bytes and 8 MiB and an optional header size")
		}
		out := "fixed," + strconv.Itoa(nums[0])
		if len(nums) == 2 {
			out += "," + strconv.Itoa(nums[1])
		}
		return out, nil
	}
	if len(nums) != 4 {
		return bad("buzhash takes four values")
	}
	minExp, maxExp, mask, window := nums[0], nums[1], nums[2], nums[3]
	switch {
	case minExp < 6 || maxExp > 23:
		return bad("MIN_EXP and MAX_EXP must lie between 6 and 23")
	case !(minExp <= mask && mask <= maxExp):
		return bad("MIN_EXP <= MASK_BITS <= MAX_EXP must hold")
	case window < 1 || window%2 == 0:
		return bad("WINDOW must be odd")
	}
	return fmt.Sprintf("buzhash,%d,%d,%d,%d", minExp, maxExp, mask, window), nil
}

// LastArchiveInfoArgs builds `borg info --json --last 1`: the newest archive with its metadata.
func LastArchiveInfoArgs(repo Repository) []string {
	return []string{"info", "--log-json", "--json", "--last", "1", repo.Raw}
}

// LastArchiveChunkerParams reads the chunker params of the newest archive from
// LastArchiveInfoArgs' output; ok is false when the repository holds no archive.
func LastArchiveChunkerParams(out []byte) (params string, ok bool, err error) {
	var info struct {
		Archives []struct {
			ChunkerParams []json.RawMessage `json:"chunker_params"`
		} `json:"archives"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", false, fmt.Errorf("cannot read `borg info --json` output: %v", err)
	}
	if len(info.Archives) == 0 {
		return "", false, nil
	}
	var words []string
	for _, raw := range info.Archives[0].ChunkerParams {
		var w string
		if json.Unmarshal(raw, &w) != nil {
			w = string(raw) // a number
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		return "", false, fmt.Errorf("the newest archive does not say its chunker params")
	}
	p, err := ParseChunkerParams(strings.Join(words, ","))
	if err != nil {
		return "", false, err
	}
	return p, true, nil
}
