package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/docker/docker/client"
)

// repoReadiness is what a backup learns of its repositories before borg create.
type repoReadiness struct {
	reach    map[string]error          // by repository; nil: reachable
	free     map[string]func() *int64  // by repository: free bytes on its disk, when known (waits for the answer)
	chunking map[string]chunkingChoice // by reachable repository
}

// freeSpace is the free space of a repository's disk, when its server told; it waits for the
// answer of a server still being asked.
func (rd repoReadiness) freeSpace(repo string) *int64 {
	if f := rd.free[repo]; f != nil {
		return f()
	}
	return nil
}

// prepareRepositories checks in the background that every repository can be reached and
// settles the chunker params of its next archive, while the caller gathers the host: the checks
// cost no wall time of their own. An unreachable repository is logged the moment that is known,
// before a long gather ends; when none can be reached, noneReachable is called (the caller stops
// gathering). The result arrives on the channel once; cancel ctx to stop waiting for retries.
func prepareRepositories(ctx context.Context, o *options, r *borg.Runner, requested string, noneReachable func()) <-chan repoReadiness {
	done := make(chan repoReadiness, 1)
	go func() {
		rd := repoReadiness{reach: map[string]error{}, free: map[string]func() *int64{}, chunking: map[string]chunkingChoice{}}
		for _, repo := range o.Repos {
			log := o.Log.WithField("repository", repo.Raw)
			err := withRetry(ctx, o, "reaching "+repo.Raw, func(ctx context.Context) error {
				free, err := checkReachable(ctx, o, repo)
				rd.free[repo.Raw] = free
				return err
			})
			switch {
			case err != nil && ctx.Err() != nil:
				// Stopped because the gathering failed or the run was interrupted: that is
				// reported on its own, and this repository was not found unreachable.
			case err != nil:
				log.Errorf("not reachable: %v", err)
			default:
				err = withRetry(ctx, o, "reading the chunker params of "+repo.Raw, func(ctx context.Context) error {
					c, err := chooseChunking(ctx, o, r, repo, requested)
					rd.chunking[repo.Raw] = c
					return err
				})
				if err != nil && ctx.Err() == nil {
					log.Errorf("cannot tell which chunker params its archives use: %v", err)
				}
			}
			rd.reach[repo.Raw] = err
		}
		if allFailed(rd.reach) {
			noneReachable()
		}
		done <- rd
	}()
	return done
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
