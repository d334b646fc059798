package borg

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
)

// ItemsArgs builds `borg list --json-lines ARCHIVE [PATH...]`: one JSON object per archived
// file, directory or symlink, as borg stored it (path, type, size).
func ItemsArgs(repo Repository, archive string, paths ...string) []string {
	return append([]string{"list", "--log-json", "--json-lines", ArchiveRef(repo, archive)}, paths...)
}

// Item is one archived file, directory or symlink.
type Item struct {
	Path string `json:"path"` // archive path, no leading "/"
	// Type is the first letter of `ls -l`: "-" regular file, "d" directory, "l" symlink, ...
	Type string `json:"type"`
	Size int64  `json:"size"` // bytes of a regular file as archived
}

// ParseItems reads `borg list --json-lines` output.
func ParseItems(out []byte) ([]Item, error) {
	var items []Item
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var it Item
		if err := json.Unmarshal(line, &it); err != nil {
			return nil, fmt.Errorf("cannot read borg's item list: %v", err)
		}
		items = append(items, it)
	}
	return items, sc.Err()
}
