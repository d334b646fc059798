package main

import (
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
)

// repositoryUsage is a backup's figure for the full-disk estimate: a local repository is
// measured on disk; a remote one gives the size borg create reported for the whole repository
// (deduplicated and compressed), and the free space the reachability check read before the
// backup, less what this archive added, when the SSH key may run df (a forced-command key may
// not: then the backup server's `cht-backup overdue` reports it). It costs no extra round trip
// to the server. nil when nothing could be learnt; it never fails the backup.
func repositoryUsage(o *options, repo borg.Repository, s BackupSummary, freeBefore *int64) *state.UsageSample {
	u := &state.UsageSample{Time: time.Now()}
	if repo.Local() {
		bytes, free, err := borg.DiskUsage(repo.Path)
		if err != nil {
			o.Log.Debugf("size of %s not measured: %v", repo.Raw, err)
			return nil
		}
		u.Bytes, u.FreeBytes = bytes, &free
		return u
	}
	if s.repositoryBytes <= 0 {
		return nil
	}
	u.Bytes = s.repositoryBytes
	if freeBefore != nil {
		free := max(*freeBefore-s.DeduplicatedSize, 0)
		u.FreeBytes = &free
	}
	return u
}
