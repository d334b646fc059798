package borg

// CreateOptions are the settings of one `borg create`.
type CreateOptions struct {
	Archive     string
	Paths       []string // archived in this order: borg walks path arguments as given
	Compression string   // e.g. "lz4", "zstd,3"; empty means lz4
	Excludes    []string // borg patterns, e.g. "sh:**/*.tmp"
	// ExcludeFrom is a file of borg patterns, one a line (--exclude-from).
	ExcludeFrom string
	// ChunkerParams in ParseChunkerParams' form; empty leaves borg's default.
	ChunkerParams string
	Progress      bool // emit archive_progress lines (--progress with --log-json)
	DryRun        bool
}

// CreateArgs builds `borg create`. Without DryRun it asks for --json stats on stdout.
func CreateArgs(repo Repository, o CreateOptions) []string {
	comp := o.Compression
	if comp == "" {
		comp = "lz4"
	}
	args := []string{"create", "--log-json"}
	if o.DryRun {
		// --json and --stats are refused with --dry-run; --list shows what would be archived.
		args = append(args, "--dry-run", "--list")
	} else {
		args = append(args, "--json")
	}
	if o.Progress {
		args = append(args, "--progress")
	}
	args = append(args, "--compression", comp)
	if o.ChunkerParams != "" {
		args = append(args, "--chunker-params", o.ChunkerParams)
	}
	for _, e := range o.Excludes {
		args = append(args, "--exclude", e)
	}
	if o.ExcludeFrom != "" {
		args = append(args, "--exclude-from", o.ExcludeFrom)
	}
	args = append(args, ArchiveRef(repo, o.Archive))
	return append(args, o.Paths...)
}
