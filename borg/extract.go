package borg

// ExtractOptions are the settings of one `borg extract`, run in the target directory.
type ExtractOptions struct {
	Paths    []string // only these archive paths; empty means everything
	Progress bool
	DryRun   bool // read and decrypt everything, write nothing
	// NumericIDs restores owners by uid/gid, not by user name: container files (uid 5984 for
	// CouchDB) must keep their numbers on a host that names those ids differently or not at all.
	NumericIDs bool
}

// ExtractArgs builds `borg extract`; borg extracts into its working directory.
func ExtractArgs(repo Repository, archive string, o ExtractOptions) []string {
	args := []string{"extract", "--log-json"}
	if o.DryRun {
		args = append(args, "--dry-run")
	}
	if o.Progress {
		args = append(args, "--progress")
	}
	if o.NumericIDs {
		args = append(args, "--numeric-ids")
	}
	args = append(args, ArchiveRef(repo, archive))
	return append(args, o.Paths...)
}
