package borg

import (
	"encoding/json"
	"fmt"
	"time"
)

// InfoArgs builds `borg info --json` for a repository or, with archive set, one archive.
func InfoArgs(repo Repository, archive string) []string {
	target := repo.Raw
	if archive != "" {
		target = ArchiveRef(repo, archive)
	}
	return []string{"info", "--log-json", "--json", target}
}

// ListArgs builds `borg list --json`: the archives of a repository.
func ListArgs(repo Repository) []string {
	return []string{"list", "--log-json", "--json", repo.Raw}
}

// RepositoryInfo is the part of `borg info --json` output we use.
type RepositoryInfo struct {
	Repository struct {
		ID       string `json:"id"`
		Location string `json:"location"`
	} `json:"repository"`
	Encryption struct {
		Mode string `json:"mode"`
	} `json:"encryption"`
	Cache struct {
		Stats Stats `json:"stats"`
	} `json:"cache"`
	Archives []ArchiveInfo `json:"archives"`
}

// Stats are borg's size figures.
type Stats struct {
	TotalSize   int64 `json:"total_size"`
	TotalCSize  int64 `json:"total_csize"`
	UniqueCSize int64 `json:"unique_csize"`
	TotalChunks int64 `json:"total_chunks"`
	UniqueSize  int64 `json:"unique_size"`
}

// ArchiveInfo describes one archive as `borg info --json` and `borg create --json` give it.
type ArchiveInfo struct {
	Name     string    `json:"name"`
	Hostname string    `json:"hostname"`
	ID       string    `json:"id"`
	Start    BorgTime  `json:"start"`
	End      BorgTime  `json:"end"`
	Duration float64   `json:"duration"`
	Stats    ArchStats `json:"stats"`
}

// ArchStats are an archive's own figures.
type ArchStats struct {
	OriginalSize     int64 `json:"original_size"`
	CompressedSize   int64 `json:"compressed_size"`
	DeduplicatedSize int64 `json:"deduplicated_size"`
	NFiles           int64 `json:"nfiles"`
}

// ArchiveListing is `borg list --json` output.
type ArchiveListing struct {
	Archives []struct {
		Name string `json:"name"`
		// Archive and Time exist in borg 1.2 output; Start is the time the archive was begun.
		ID    string   `json:"id"`
		Start BorgTime `json:"start"`
		Time  BorgTime `json:"time"`
	} `json:"archives"`
}

// BorgTime reads borg's JSON timestamps ("2026-11-23T01:02:03.000000", local time, no zone).
type BorgTime struct{ time.Time }

func (t *BorgTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, layout := range []string{"2006-01-02T15:04:05.000000", "2006-01-02T15:04:05", time.RFC3339Nano} {
		if v, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			t.Time = v
			return nil
		}
	}
	return fmt.Errorf("cannot read borg time %q", s)
}

// ArchivesInfoArgs builds `borg info --json` for every archive of a repository: names, times and
// sizes, oldest first.
func ArchivesInfoArgs(repo Repository) []string {
	return []string{"info", "--log-json", "--json", "--glob-archives", "*", "--sort-by", "timestamp", repo.Raw}
}
