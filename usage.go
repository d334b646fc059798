package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
)

// repositoryUsage learns, after a backup, how big the repository is and how much room is left
// where it lives, for the full-disk estimate: a local repository is measured on disk; a remote
// one gives borg's own figure (deduplicated and compressed), and the free space when the SSH key
// may run df (a forced-command key may not: then the backup server's `cht-backup overdue`
// reports it). nil when nothing could be learnt; it never fails the backup.
func repositoryUsage(ctx context.Context, o *options, r *borg.Runner, repo borg.Repository) *state.UsageSample {
	s := &state.UsageSample{Time: time.Now()}
	if repo.Local() {
		bytes, free, err := borg.DiskUsage(repo.Path)
		if err != nil {
			o.Log.Debugf("size of %s not measured: %v", repo.Raw, err)
			return nil
		}
		s.Bytes, s.FreeBytes = bytes, &free
		return s
	}
	res, err := r.Run(ctx, borg.Call{Args: borg.InfoArgs(repo, "")})
	if err != nil {
		o.Log.Debugf("size of %s not learnt: %v", repo.Raw, err)
		return nil
	}
	var info borg.RepositoryInfo
	if err := json.Unmarshal(res.Stdout, &info); err != nil {
		return nil
	}
	s.Bytes = info.Cache.Stats.UniqueCSize
	c, _, err := o.dialRepository(ctx, repo)
	if err != nil {
		return s
	}
	defer c.Close()
	if free, err := c.FreeSpace(ctx, repo.Path); err == nil {
		f := int64(free)
		s.FreeBytes = &f
	} else {
		o.Log.Debugf("free space on %s not learnt: %v", repo.Host, err)
	}
	return s
}
