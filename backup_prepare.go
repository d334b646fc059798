package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/docker/docker/client"
)

// repoReadiness is what a backup learns of its repositories before borg create, filled in the
// background. A repository's entries are read through wait once it is settled; the maps
// themselves only once all is closed.
type repoReadiness struct {
	mu       sync.Mutex                // guards the maps until all is closed
	reach    map[string]error          // by repository; nil: reachable
	free     map[string]func() *int64  // by repository: free bytes on its disk, when known (waits for the answer)
	chunking map[string]chunkingChoice // by reachable repository
	retried  map[string]bool           // the check failed at first and was tried again
	settled  map[string]chan struct{}  // closed once the repository's entries are final
	all      chan struct{}             // closed once every repository is settled
}

// wait waits until repo is settled, and says whether it can be reached and whether its check
// had to be tried again; (nil, false) when ctx ends first.
func (rd *repoReadiness) wait(ctx context.Context, repo string) (reach error, retried bool) {
	select {
	case <-rd.settled[repo]:
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return rd.reach[repo], rd.retried[repo]
	case <-ctx.Done():
		return nil, false
	}
}

// chunkingOf is the chunker params settled for repo's next archive (once it is settled).
func (rd *repoReadiness) chunkingOf(repo string) chunkingChoice {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.chunking[repo]
}

// isSettled says, without waiting, whether repo's check has answered.
func (rd *repoReadiness) isSettled(repo string) bool {
	select {
	case <-rd.settled[repo]:
		return true
	default:
		return false
	}
}

// freeSpace is the free space of a repository's disk, when its server told; it waits for the
// answer of a server still being asked.
func (rd *repoReadiness) freeSpace(ctx context.Context, repo string) *int64 {
	select {
	case <-rd.settled[repo]:
	case <-ctx.Done():
		return nil
	}
	rd.mu.Lock()
	f := rd.free[repo]
	rd.mu.Unlock()
	if f != nil {
		return f()
	}
	return nil
}

// set records what was learnt of repo.
func (rd *repoReadiness) set(update func()) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	update()
}

// prepareRepositories checks in the background that every repository can be reached and
// settles the chunker params of its next archive, while the caller gathers the host: the checks
// cost no wall time of their own. An unreachable repository is logged the moment that is known,
// before a long gather ends; when none can be reached, noneReachable is called (the caller stops
// gathering). Cancel ctx to stop waiting for retries.
func prepareRepositories(ctx context.Context, o *options, r *borg.Runner, requested string, recorded map[string]state.Chunking, noneReachable func()) *repoReadiness {
	rd := &repoReadiness{reach: map[string]error{}, free: map[string]func() *int64{}, chunking: map[string]chunkingChoice{},
		retried: map[string]bool{}, settled: map[string]chan struct{}{}, all: make(chan struct{})}
	for _, repo := range o.Repos {
		rd.settled[repo.Raw] = make(chan struct{})
	}
	go func() {
		defer close(rd.all)
		for _, repo := range o.Repos {
			log := o.Log.WithField("repository", repo.Raw)
			attempts := 0
			err := withRetry(ctx, o, "reaching "+repo.Raw, func(ctx context.Context) error {
				attempts++
				free, err := checkReachable(ctx, o, repo)
				rd.set(func() { rd.free[repo.Raw] = free })
				return err
			})
			rd.set(func() { rd.retried[repo.Raw] = attempts > 1 })
			switch {
			case err != nil && ctx.Err() != nil:
				// Stopped because the gathering failed or the run was interrupted: that is
				// reported on its own, and this repository was not found unreachable.
			case err != nil:
				log.Errorf("not reachable: %v", err)
			default:
				err = withRetry(ctx, o, "reading the chunker params of "+repo.Raw, func(ctx context.Context) error {
					c, err := chooseChunking(ctx, r, repo, requested, recorded)
					rd.set(func() { rd.chunking[repo.Raw] = c })
					return err
				})
				if err != nil && ctx.Err() == nil {
					log.Errorf("cannot tell which chunker params its archives use: %v", err)
				}
			}
			rd.set(func() { rd.reach[repo.Raw] = err })
			close(rd.settled[repo.Raw])
		}
		rd.mu.Lock()
		none := allFailed(rd.reach)
		rd.mu.Unlock()
		if none {
			noneReachable()
		}
	}()
	return rd
}

// gatherHost gathers the CHT host into fresh staging (sources.Gather), with a Docker client
// when a container part is wanted.
func gatherHost(ctx context.Context, o *options, r *borg.Runner, bo backupOptions, host string, now time.Time) (*sources.Gathered, error) {
	if removed, err := sources.RemoveStaleStaging(o.StateDir); err == nil && len(removed) > 0 {
		o.Log.Warnf("removed staging left by an earlier run that was killed: %s", strings.Join(removed, ", "))
	}
	var docker *client.Client
	var dockerErr error
	if !(slices.Contains(bo.Skip, sources.PartTLS) && slices.Contains(bo.Skip, sources.PartCredentials)) {
		// Docker down is no reason to leave CouchDB's data unarchived: Gather records the
		// container parts as missing and the run ends partial.
		if docker, dockerErr = sources.NewDockerClient(ctx); dockerErr != nil {
			o.Log.Errorf("%v", dockerErr)
		} else {
			defer docker.Close()
		}
	}
	g, err := sources.Gather(ctx, sources.GatherOptions{
		ChtDir: o.ChtDir, StateDir: o.StateDir, Skip: bo.Skip, Docker: docker, DockerErr: dockerErr,
		ToolVersion: version, BorgVersion: r.Version.String(), Hostname: host, Now: now,
	})
	if err != nil {
		// sources' errors name what is missing and what to check; the hint only adds the outcome.
		return nil, &userError{err: err, hint: "fix what the line above names and run the backup again; nothing was archived"}
	}
	return g, nil
}

// unreachableOutcomes are the outcomes of a backup that reached no repository.
func unreachableOutcomes(o *options, reach map[string]error) []state.Outcome {
	var outcomes []state.Outcome
	for _, repo := range o.Repos {
		err := reach[repo.Raw]
		outcomes = append(outcomes, backupOutcome(BackupSummary{Repository: repo.Raw, Error: oneLine(err.Error()), Hint: hintOf(err)}, time.Time{}, time.Time{}))
	}
	return outcomes
}
