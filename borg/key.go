package borg

// KeyExportArgs builds `borg key export`; paper gives the text form meant for printing.
func KeyExportArgs(repo Repository, file string, paper bool) []string {
	args := []string{"key", "export", "--log-json"}
	if paper {
		args = append(args, "--paper")
	}
	return append(args, repo.Raw, file)
}
