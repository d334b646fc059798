package borg

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Borg 1.x repository on-disk format: data/<dir>/<segment> files, each "BORG_SEG" followed by
// entries of crc32 (4 bytes), size (4, the whole entry), tag (1) and, for PUT and DELETE, the
// 32-byte object id; a PUT carries the object after it. A COMMIT closes a transaction, and the
// transaction's id is the number of the segment holding its COMMIT. The manifest, the list of
// archives, is the object whose id is 32 zero bytes.
const (
	segmentMagic = "BORG_SEG"
	tagPut       = 0
	tagDelete    = 1
	tagCommit    = 2
	entryHeader  = 9
	putHeader    = 41
	// The manifest is small; anything larger under its id is not read, only measured.
	maxManifestRead = 64 << 20
)

// Activity is what a repository's own files tell about its writes, read without key or
// passphrase and without taking borg's lock, so it works while a backup runs.
type Activity struct {
	Path string `json:"path"`
	// LastArchive is when the newest transaction that added an archive was committed (a backup,
	// or a checkpoint of one); zero when the repository holds none.
	LastArchive        time.Time `json:"last_archive"`
	LastArchiveSegment int       `json:"last_archive_transaction"`
	// Estimated: a compaction merged the transactions since, and LastArchive is the client's
	// last logged commit before it (a prune may be later than the last backup).
	Estimated bool `json:"estimated,omitempty"`
	// LastCommit is the newest committed transaction of any kind (backup, prune, compaction).
	LastCommit        time.Time `json:"last_commit"`
	LastCommitSegment int       `json:"last_commit_transaction"`
	Locked            bool      `json:"locked"` // a borg process holds the repository lock now
	AppendOnly        bool      `json:"append_only"`
	Bytes             int64     `json:"bytes"`      // what the segment files take
	FreeBytes         int64     `json:"free_bytes"` // free space of the file system holding it, -1 if unknown
}

// ErrNotBorgRepository means the directory lacks a borg repository's config.
var ErrNotBorgRepository = errors.New("not a borg repository")

// ReadActivity reads the repository directory dir. Entries after the last COMMIT (a backup
// still running, or one that was killed) are not committed and are ignored.
func ReadActivity(dir string) (*Activity, error) {
	a := &Activity{Path: dir, FreeBytes: -1}
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (no config file)", dir, ErrNotBorgRepository)
		}
		return nil, fmt.Errorf("%s: %v", dir, unwrapPathError(err))
	}
	if !strings.Contains(string(cfg), "[repository]") {
		return nil, fmt.Errorf("%s: %w (its config has no [repository] section)", dir, ErrNotBorgRepository)
	}
	a.AppendOnly = appendOnlyLine.Match(cfg)
	if _, err := os.Stat(filepath.Join(dir, "lock.exclusive")); err == nil {
		a.Locked = true
	}
	if _, free, err := DiskUsage(dir); err == nil {
		a.FreeBytes = free
	}
	logged := readTransactionLog(filepath.Join(dir, "transactions"))

	segs, err := listSegments(filepath.Join(dir, "data"))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", dir, err)
	}
	for _, s := range segs {
		a.Bytes += s.size
	}
	when := func(s segmentFile) time.Time {
		if t, ok := logged[s.num]; ok {
			return t
		}
		return s.mtime
	}

	// Walk back from the newest segment, one transaction at a time. A transaction that wrote
	// the manifest and other objects, with a manifest unlike the one before it, added an archive:
	// prune and delete write the manifest alone, compaction re-writes the same manifest and
	// moves objects without it.
	var cur, pending *txn
	var found *txn
	compacted := 0 // the newest commit that borg did not log in append-only mode: a compaction
	finish := func(t *txn) bool {
		if a.LastCommit.IsZero() {
			a.LastCommit, a.LastCommitSegment = when(t.seg), t.seg.num
		}
		_, isLogged := logged[t.seg.num]
		hostCommit := len(logged) == 0 || isLogged
		if !hostCommit && compacted == 0 {
			compacted = t.seg.num
		}
		if pending != nil && t.manifest {
			if t.hash != pending.hash {
				found = pending
				return true
			}
			pending = nil
		}
		if pending == nil && t.manifest && t.others > 0 && hostCommit {
			pending = t
		}
		return false
	}
	done := false
	for i := len(segs) - 1; i >= 0 && !done; i-- {
		entries, err := readSegment(segs[i].path)
		if err != nil {
			return nil, err
		}
		for j := len(entries) - 1; j >= 0 && !done; j-- {
			e := entries[j]
			switch {
			case e.tag == tagCommit:
				if cur != nil {
					done = finish(cur)
				}
				cur = &txn{seg: segs[i]}
			case cur == nil:
				// after the last COMMIT: not committed
			case e.tag == tagPut && e.manifest:
				if !cur.manifest { // the newest manifest of the transaction counts
					cur.manifest, cur.hash = true, e.hash
				}
			case e.tag == tagPut:
				cur.others++
			}
		}
	}
	if !done && cur != nil {
		finish(cur)
	}
	if found == nil {
		found = pending // the oldest transaction left: nothing before it to compare with
	}
	switch {
	case found != nil:
		a.LastArchive, a.LastArchiveSegment = when(found.seg), found.seg.num
	case compacted > 0:
		// Compaction merged the older transactions into one, so which of them added an archive
		// cannot be told any more; the newest commit the client made before it is the best
		// lower bound: its backup came before that.
		for id, t := range logged {
			if id < compacted && id > a.LastArchiveSegment {
				a.LastArchive, a.LastArchiveSegment = t, id
			}
		}
		a.Estimated = !a.LastArchive.IsZero()
	}
	return a, nil
}

type txn struct {
	seg      segmentFile
	manifest bool
	hash     [32]byte
	others   int // PUTs of objects other than the manifest
}

type segmentFile struct {
	num   int
	path  string
	size  int64
	mtime time.Time
}

type segmentEntry struct {
	tag      byte
	manifest bool
	hash     [32]byte // of a manifest PUT's object
}

// listSegments finds data/<n>/<m> segment files, sorted by number.
func listSegments(data string) ([]segmentFile, error) {
	dirs, err := os.ReadDir(data)
	if err != nil {
		return nil, fmt.Errorf("cannot read its segments: %v", unwrapPathError(err))
	}
	var segs []segmentFile
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil || !d.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(data, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("cannot read its segments: %v", unwrapPathError(err))
		}
		for _, f := range files {
			n, err := strconv.Atoi(f.Name())
			if err != nil || !f.Type().IsRegular() {
				continue
			}
			info, err := f.Info()
			if err != nil {
				continue // removed by a compaction meanwhile
			}
			segs = append(segs, segmentFile{num: n, path: filepath.Join(data, d.Name(), f.Name()), size: info.Size(), mtime: info.ModTime()})
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].num < segs[j].num })
	return segs, nil
}

// readSegment reads a segment's entry headers (and the manifest's bytes). It stops at the first
// entry that is cut short or malformed: the tail a running borg is still writing.
func readSegment(path string) ([]segmentEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil // removed by a compaction meanwhile
		}
		return nil, fmt.Errorf("cannot read segment %s: %v", path, unwrapPathError(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := info.Size()
	magic := make([]byte, len(segmentMagic))
	if _, err := f.ReadAt(magic, 0); err != nil || string(magic) != segmentMagic {
		return nil, nil // empty, or being created
	}
	var entries []segmentEntry
	hdr := make([]byte, putHeader)
	var zero [32]byte
	for off := int64(len(segmentMagic)); off+entryHeader <= size; {
		n := putHeader
		if size-off < putHeader {
			n = entryHeader
		}
		if _, err := f.ReadAt(hdr[:n], off); err != nil {
			break
		}
		esize := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		tag := hdr[8]
		if esize < entryHeader || off+esize > size || tag > tagCommit {
			break
		}
		e := segmentEntry{tag: tag}
		switch tag {
		case tagPut, tagDelete:
			if esize < putHeader || n < putHeader {
				return entries, nil
			}
			if tag == tagPut && bytes.Equal(hdr[9:41], zero[:]) {
				e.manifest = true
				h := sha256.New()
				if _, err := io.Copy(h, io.NewSectionReader(f, off+putHeader, min(esize-putHeader, maxManifestRead))); err != nil {
					return entries, nil
				}
				copy(e.hash[:], h.Sum(nil))
			}
		case tagCommit:
			if esize != entryHeader {
				return entries, nil
			}
		}
		entries = append(entries, e)
		off += esize
	}
	return entries, nil
}

var appendOnlyLine = regexp.MustCompile(`(?m)^append_only\s*=\s*(1|true|yes)\s*$`)

var transactionLine = regexp.MustCompile(`^transaction (\d+), UTC time (\S+)`)

// readTransactionLog reads the log an append-only repository keeps of its commits.
func readTransactionLog(path string) map[int]time.Time {
	m := map[int]time.Time{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := transactionLine.FindStringSubmatch(sc.Text())
		if s == nil {
			continue
		}
		id, _ := strconv.Atoi(s[1])
		for _, layout := range []string{"2006-01-02T15:04:05.000000", "2006-01-02T15:04:05"} {
			if t, err := time.ParseInLocation(layout, s[2], time.UTC); err == nil {
				m[id] = t
				break
			}
		}
	}
	return m
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// DiskUsage is what a local repository's segment files take, and the free space of the file
// system holding them.
func DiskUsage(dir string) (bytes, free int64, err error) {
	segs, err := listSegments(filepath.Join(dir, "data"))
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v", dir, err)
	}
	for _, s := range segs {
		bytes += s.size
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return bytes, 0, fmt.Errorf("%s: %v", dir, err)
	}
	return bytes, int64(st.Bavail) * int64(st.Bsize), nil
}
