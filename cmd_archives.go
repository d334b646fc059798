package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/cht-backup/cht-backup/sources"
	"github.com/cht-backup/cht-backup/state"
	"github.com/urfave/cli/v2"
)

func archivesCommand() *cli.Command {
	return &cli.Command{
		Name:  "archives",
		Usage: "list the archives of each repository, oldest first, with time and size",
		Description: "Lists every archive with its time and sizes. Archives named NAME.checkpoint or NAME.checkpoint.N were left by\n" +
			"an interrupted backup: they are partial, marked as such, and never chosen as `latest`.",
		Flags: []cli.Flag{jsonFlag},
		Action: withOptions(noArgs, func(c *cli.Context, o *options) error {
			return runArchives(c.Context, o, os.Stdout)
		}),
	}
}

// Archive is one archive as `archives` reports it.
type Archive struct {
	Repository       string    `json:"repository"`
	Name             string    `json:"name"`
	Time             time.Time `json:"time"`
	Host             string    `json:"host,omitempty"`
	Checkpoint       bool      `json:"checkpoint"`
	Files            int64     `json:"files"`
	OriginalSize     int64     `json:"original_size"`
	CompressedSize   int64     `json:"compressed_size"`
	DeduplicatedSize int64     `json:"deduplicated_size"`
}

func runArchives(ctx context.Context, o *options, out io.Writer) error {
	if err := o.requireRepos(); err != nil {
		return err
	}
	r, err := o.runner(ctx, true)
	if err != nil {
		return err
	}
	all := []Archive{}
	var failed []error
	unread := map[string]error{}
	for _, repo := range o.Repos {
		list, err := listArchives(ctx, r, repo)
		if err != nil {
			failed = append(failed, err)
			unread[repo.Raw] = err
			continue
		}
		all = append(all, list...)
		// The listing is there anyway: status and the next backup count from it.
		if err := state.RecordArchiveCount(o.StateDir, repo.Raw, len(list), time.Now()); err != nil {
			o.Log.Debugf("archive count of %s not kept: %v", repo.Raw, err)
		}
	}
	if o.JSON {
		if err := writeJSON(out, all); err != nil {
			return err
		}
	} else {
		printArchives(out, o.Repos, all, unread)
	}
	if len(failed) > 0 {
		return failed[0]
	}
	return nil
}

// listArchives lists one repository's archives with sizes, oldest first.
func listArchives(ctx context.Context, r *borg.Runner, repo borg.Repository) ([]Archive, error) {
	res, err := r.Run(ctx, borg.Call{Args: borg.ArchivesInfoArgs(repo)})
	if err != nil {
		return nil, err
	}
	var info borg.RepositoryInfo
	if err := json.Unmarshal(res.Stdout, &info); err != nil {
		return nil, fmt.Errorf("cannot read `borg info --json` output for %s: %v", repo.Raw, err)
	}
	var list []Archive
	for _, a := range info.Archives {
		list = append(list, Archive{
			Repository: repo.Raw, Name: a.Name, Time: a.Start.Time, Host: a.Hostname,
			Checkpoint: borg.IsCheckpoint(a.Name), Files: a.Stats.NFiles,
			OriginalSize: a.Stats.OriginalSize, CompressedSize: a.Stats.CompressedSize, DeduplicatedSize: a.Stats.DeduplicatedSize,
		})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Time.Before(list[j].Time) })
	return list, nil
}

// printArchives lists each repository's archives; one whose archives could not be read says so,
// never "no archives yet".
func printArchives(w io.Writer, repos []borg.Repository, all []Archive, unread map[string]error) {
	for _, repo := range repos {
		fmt.Fprintf(w, "repository %s\n", repo.Raw)
		if err := unread[repo.Raw]; err != nil {
			fmt.Fprintf(w, "  could not read its archives: %s\n", oneLine(err.Error()))
			continue
		}
		n := 0
		for _, a := range all {
			if a.Repository != repo.Raw {
				continue
			}
			n++
			mark := ""
			if a.Checkpoint {
				mark = "  (partial: left by an interrupted backup)"
			}
			fmt.Fprintf(w, "  %-32s %s  %7d files  %10s original  %10s deduplicated%s\n", a.Name, a.Time.Format(time.RFC3339),
				a.Files, sources.HumanBytes(a.OriginalSize), sources.HumanBytes(a.DeduplicatedSize), mark)
		}
		if n == 0 {
			fmt.Fprintln(w, "  no archives yet (run `cht-backup backup`)")
		}
	}
}

// archiveListing is `borg list --json` of a repository, oldest first: names and times only, so
// much cheaper than listArchives' sizes.
func archiveListing(ctx context.Context, r *borg.Runner, repo borg.Repository) (*borg.ArchiveListing, error) {
	res, err := r.Run(ctx, borg.Call{Args: borg.ListArgs(repo)})
	if err != nil {
		return nil, err
	}
	var l borg.ArchiveListing
	if err := json.Unmarshal(res.Stdout, &l); err != nil {
		return nil, fmt.Errorf("cannot read `borg list --json` output for %s: %v", repo.Raw, err)
	}
	sort.SliceStable(l.Archives, func(i, j int) bool { return l.Archives[i].Start.Before(l.Archives[j].Start.Time) })
	return &l, nil
}

// resolveArchive turns a user's archive name into one that exists in repo: `latest` is the newest
// complete archive (never a .checkpoint); any other name must exist. It also says how many
// archives the repository holds, which its listing tells anyway (status shows the count).
func resolveArchive(ctx context.Context, r *borg.Runner, repo borg.Repository, name string) (string, int, error) {
	l, err := archiveListing(ctx, r, repo)
	if err != nil {
		return "", 0, err
	}
	n := len(l.Archives)
	if name == "latest" {
		for i := len(l.Archives) - 1; i >= 0; i-- {
			if !borg.IsCheckpoint(l.Archives[i].Name) {
				return l.Archives[i].Name, n, nil
			}
		}
		return "", n, &userError{err: fmt.Errorf("repository %s has no complete archive yet", repo.Raw), hint: "run `cht-backup backup` first"}
	}
	for _, a := range l.Archives {
		if a.Name == name {
			return name, n, nil
		}
	}
	return "", n, &userError{err: fmt.Errorf("archive %q is not in repository %s: %w", name, repo.Raw, borg.ErrArchiveNotFound),
		hint: "list the archives with `cht-backup archives` and use one of those names, or `latest`"}
}
