package main

import (
	"context"
	"fmt"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

// chunkerParamsFlag lets the user change a repository's chunker params; by default each
// repository keeps the ones it was started with.
var chunkerParamsFlag = &cli.StringFlag{Name: "chunker-params", EnvVars: []string{envName("chunker-params")},
	Usage: "borg chunker `PARAMS` for this repository from now on, e.g. " + borg.CouchDBChunkerParams + " (new repositories' default) or default (borg's); " +
		"a change stores every file once more"}

// chunkingChoice is the chunker params of a repository's next archive, and whether the record
// must be written once that archive exists.
type chunkingChoice struct {
	Params   string
	Source   string // as state.Chunking.Source
	Previous string // the params this replaces when the user changed them; "" otherwise
	Empty    bool   // the repository holds no archive yet (created by init)
	record   bool
}

// chooseChunking settles the chunker params of repo's next archive: requested (a canonical
// --chunker-params) when given; else the params recorded for repo; else those of its newest
// archive, so a repository made by hand or by an older cht-backup keeps cutting files as before;
// else, for a repository without archives, CouchDB's. recorded is state.LoadChunking's.
func chooseChunking(ctx context.Context, r *borg.Runner, repo borg.Repository, requested string, recorded map[string]state.Chunking) (chunkingChoice, error) {
	if c, ok := knownChunking(recorded, repo, requested); ok {
		return c, nil
	}
	res, err := r.Run(ctx, borg.Call{Args: borg.LastArchiveInfoArgs(repo)})
	if err != nil {
		return chunkingChoice{}, err
	}
	p, ok, err := borg.LastArchiveChunkerParams(res.Stdout)
	switch {
	case err != nil:
		return chunkingChoice{}, fmt.Errorf("%s: %v", repo.Raw, err)
	case ok:
		return chunkingChoice{Params: p, Source: "newest archive", record: true}, nil
	}
	return chunkingChoice{Params: borg.CouchDBChunkerParams, Source: "new repository", record: true}, nil
}

// knownChunking is the choice chooseChunking makes without asking the repository, when it can.
func knownChunking(recorded map[string]state.Chunking, repo borg.Repository, requested string) (chunkingChoice, bool) {
	rec, known := recorded[repo.Raw]
	switch {
	case requested != "" && known && rec.Params == requested:
		return chunkingChoice{Params: requested, Source: rec.Source, Empty: rec.Empty, record: rec.Empty}, true
	case requested != "":
		c := chunkingChoice{Params: requested, Source: "--chunker-params", Empty: rec.Empty, record: true}
		if known && !rec.Empty {
			c.Previous = rec.Params
		}
		return c, true
	case known:
		return chunkingChoice{Params: rec.Params, Source: rec.Source, Empty: rec.Empty, record: rec.Empty}, true
	}
	return chunkingChoice{}, false
}

// recordChunking writes c for repo once an archive was made with it (the repository is then
// no longer empty).
func recordChunking(o *options, repo borg.Repository, c chunkingChoice) {
	if !c.record {
		return
	}
	if err := state.RecordChunking(o.StateDir, repo.Raw, state.Chunking{Params: c.Params, Source: c.Source}); err != nil {
		o.Log.Errorf("chunker params of %s not recorded: %v; the next run reads them from the newest archive", repo.Raw, err)
	}
}

// parseChunkerFlag checks --chunker-params; "" means none given.
func parseChunkerFlag(c *cli.Context) (string, error) {
	v := c.String(chunkerParamsFlag.Name)
	if v == "" {
		return "", nil
	}
	p, err := borg.ParseChunkerParams(v)
	if err != nil {
		return "", usageErrorf("--chunker-params: %v", err)
	}
	return p, nil
}
