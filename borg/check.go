package borg

import "strconv"

// CheckOptions select what `borg check` examines.
type CheckOptions struct {
	VerifyData bool // read and authenticate every chunk (slow)
	Last       int  // only the last N archives; 0 means all
	Archive    string
}

// CheckArgs builds `borg check` of the repository and its archives.
func CheckArgs(repo Repository, o CheckOptions) []string {
	args := []string{"check", "--log-json", "--progress"}
	if o.VerifyData {
		args = append(args, "--verify-data")
	}
	if o.Last > 0 {
		args = append(args, "--last", strconv.Itoa(o.Last))
	}
	if o.Archive != "" {
		return append(args, ArchiveRef(repo, o.Archive))
	}
	return append(args, repo.Raw)
}
