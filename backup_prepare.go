package main

import (
	"context"

	"github.com/cht-backup/cht-backup/borg"
)

// repoReadiness is what a backup learns of its repositories before borg create.
type repoReadiness struct {
	reach    map[string]error          // by repository; nil: reachable
	chunking map[string]chunkingChoice // by reachable repository
}

// prepareRepositories checks in the background that every repository can be reached and
// settles the chunker params of its next archive, while the caller gathers the host: the checks
// cost no wall time of their own. An unreachable repository is logged the moment that is known,
// before a long gather ends; when none can be reached, noneReachable is called (the caller stops
// gathering). The result arrives on the channel once; cancel ctx to stop waiting for retries.
func prepareRepositories(ctx context.Context, o *options, r *borg.Runner, requested string, noneReachable func()) <-chan repoReadiness {
	done := make(chan repoReadiness, 1)
	go func() {
		rd := repoReadiness{reach: map[string]error{}, chunking: map[string]chunkingChoice{}}
		for _, repo := range o.Repos {
			log := o.Log.WithField("repository", repo.Raw)
			err := withRetry(ctx, o, "reaching "+repo.Raw, func(ctx context.Context) error { return checkReachable(ctx, o, repo) })
			if err != nil {
				log.Errorf("not reachable: %v", err)
			} else {
				err = withRetry(ctx, o, "reading the chunker params of "+repo.Raw, func(ctx context.Context) error {
					c, err := chooseChunking(ctx, o, r, repo, requested)
					rd.chunking[repo.Raw] = c
					return err
				})
				if err != nil {
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
