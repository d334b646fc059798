package borg

// ExtractOptions are the settings of one `borg extract`, run in the target directory.
type ExtractOptions struct {
	Paths    []string // only these archive paths; empty means everything
	Progress bool
	DryRun   bool // read and decrypt everything, write nothing
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
	args = append(args, ArchiveRef(repo, archive))
	return append(args, o.Paths...)
}
