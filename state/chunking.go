package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ChunkingFileName holds, per repository, the chunker params its archives are made with. borg's
// repository config cannot hold them, and every archive of a repository must use the same ones:
// a change cuts every file anew, so the next archive stores all of it once more.
const ChunkingFileName = "chunking.json"

// Chunking is what is recorded for one repository.
type Chunking struct {
	Params   string    `json:"chunker_params"`
	Source   string    `json:"source"` // how they were chosen, e.g. "init", "newest archive", "--chunker-params"
	Recorded time.Time `json:"recorded"`
	// Empty says the repository held no archive when this was recorded (init created it), so
	// its first archive is archive number 1 without asking the repository.
	Empty bool `json:"empty,omitempty"`
}

type chunkingFile struct {
	Repositories map[string]Chunking `json:"repositories"`
}

// LoadChunking returns the recorded chunker params by repository; a missing file is none.
func LoadChunking(stateDir string) (map[string]Chunking, error) {
	p := filepath.Join(stateDir, ChunkingFileName)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]Chunking{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", p, unwrapPath(err))
	}
	var f chunkingFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); move it aside and run again: each repository's parameters are then read from its newest archive", p, err)
	}
	if f.Repositories == nil {
		f.Repositories = map[string]Chunking{}
	}
	return f.Repositories, nil
}

// RecordChunking records repository's chunker params. The caller holds the host run lock.
func RecordChunking(stateDir, repository string, c Chunking) error {
	if err := MakeDir(stateDir); err != nil {
		return err
	}
	all, err := LoadChunking(stateDir)
	if err != nil {
		return err
	}
	if c.Recorded.IsZero() {
		c.Recorded = time.Now().UTC()
	}
	all[repository] = c
	return WriteFileAtomic(filepath.Join(stateDir, ChunkingFileName), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(chunkingFile{Repositories: all})
	})
}
