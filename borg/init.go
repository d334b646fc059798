package borg

// Encryption is the only mode cht-backup creates: the key lives in the repository, protected by the
// passphrase, with BLAKE2b authentication. Never an unencrypted repository.
const Encryption = "repokey-blake2"

// InitArgs builds `borg init` for a new encrypted, append-only repository.
func InitArgs(repo Repository) []string {
	return []string{"init", "--log-json", "--encryption", Encryption, "--append-only", repo.Raw}
}
