package borg

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of borg failure a caller can test with errors.Is, derived from borg's msgid (or, for borg
// 1.4 with BORG_EXIT_CODES=modern, its specific exit code) rather than from prose.
var (
	ErrPassphraseWrong  = errors.New("wrong passphrase")
	ErrNoPassphrase     = errors.New("no passphrase available")
	ErrRepoNotFound     = errors.New("repository does not exist")
	ErrRepoExists       = errors.New("repository already exists")
	ErrArchiveNotFound  = errors.New("archive does not exist")
	ErrArchiveExists    = errors.New("archive already exists")
	ErrLockTimeout      = errors.New("repository is locked")
	ErrConnectionClosed = errors.New("connection to the backup server closed")
	ErrHostKey          = errors.New("host key verification failed")
	ErrAuth             = errors.New("the backup server refused our ssh key")
	ErrPathNotAllowed   = errors.New("repository path not allowed by the server")
	ErrNoSpace          = errors.New("no space left on device")
	ErrIntegrity        = errors.New("integrity error")
	ErrCancelled        = errors.New("cancelled")
	ErrNotARepository   = errors.New("not a borg repository")
	// ErrReadOnly: borg could not write (its lock, repository or cache) because the file system
	// is read-only for it, e.g. a path outside a systemd unit's ReadWritePaths.
	ErrReadOnly = errors.New("read-only file system")
)

// msgidKinds maps borg's msgids (exception class names) to kinds.
var msgidKinds = map[string]error{
	"PassphraseWrong":                             ErrPassphraseWrong,
	"PasswordRetriesExceeded":                     ErrPassphraseWrong,
	"NoPassphraseFailure":                         ErrNoPassphrase,
	"PasscommandFailure":                          ErrNoPassphrase,
	"Repository.DoesNotExist":                     ErrRepoNotFound,
	"Repository.InvalidRepository":                ErrNotARepository,
	"Repository.AlreadyExists":                    ErrRepoExists,
	"Repository.PathAlreadyExists":                ErrRepoExists,
	"Archive.DoesNotExist":                        ErrArchiveNotFound,
	"Archive.AlreadyExists":                       ErrArchiveExists,
	"LockTimeout":                                 ErrLockTimeout,
	"LockFailed":                                  ErrLockTimeout,
	"ConnectionClosed":                            ErrConnectionClosed,
	"ConnectionClosedWithHint":                    ErrConnectionClosed,
	"ConnectionBrokenWithHint":                    ErrConnectionClosed,
	"PathNotAllowed":                              ErrPathNotAllowed,
	"Repository.InsufficientFreeSpaceError":       ErrNoSpace,
	"Repository.StorageQuotaExceeded":             ErrNoSpace,
	"IntegrityError":                              ErrIntegrity,
	"FileIntegrityError":                          ErrIntegrity,
	"DecompressionError":                          ErrIntegrity,
	"Repository.ObjectNotFound":                   ErrIntegrity,
	"Signal.SIGTERM":                              ErrCancelled,
	"Signal.SIGHUP":                               ErrCancelled,
	"Repository.ParentPathDoesNotExist":           ErrRepoNotFound,
	"Repository.CheckNeeded":                      ErrIntegrity,
	"Cache.EncryptionMethodMismatch":              ErrIntegrity,
	"Cache.RepositoryAccessAborted":               ErrRepoNotFound,
	"RemoteRepository.RPCServerOutdated":          ErrConnectionClosed,
	"UnexpectedRPCDataFormatFromServer":           ErrConnectionClosed,
	"Repository.PathPermissionDenied":             ErrPathNotAllowed,
	"MandatoryFeatureUnsupported":                 ErrNotARepository,
	"Cache.RepositoryIDNotUnique":                 ErrIntegrity,
	"Cache.RepositoryReplay":                      ErrIntegrity,
	"NotABorgKeyFile":                             ErrNotARepository,
	"UnencryptedRepo":                             ErrNotARepository,
	"Repository.AtticRepository":                  ErrNotARepository,
	"Repository.InvalidRepositoryConfig":          ErrNotARepository,
	"Archive.IncompatibleFilesystemEncodingError": ErrIntegrity,
	// an archive or manifest whose authentication tag is missing or wrong: tampered or damaged
	"ArchiveTAMInvalid":        ErrIntegrity,
	"ArchiveTAMRequiredError":  ErrIntegrity,
	"TAMInvalid":               ErrIntegrity,
	"TAMRequiredError":         ErrIntegrity,
	"TAMUnsupportedSuiteError": ErrIntegrity,
}

// modernCodeKinds maps borg 1.4's specific exit codes (BORG_EXIT_CODES=modern) to kinds, for
// failures that happen before borg's logging is set up and so carry no msgid.
var modernCodeKinds = map[int]error{
	10: ErrRepoExists, 13: ErrRepoNotFound, 14: ErrNoSpace, 15: ErrNotARepository,
	18: ErrRepoNotFound, 19: ErrRepoExists, 20: ErrNoSpace, 31: ErrArchiveNotFound, 30: ErrArchiveExists,
	50: ErrNoPassphrase, 51: ErrNoPassphrase, 52: ErrPassphraseWrong, 53: ErrPassphraseWrong,
	72: ErrLockTimeout, 73: ErrLockTimeout,
	80: ErrConnectionClosed, 81: ErrConnectionClosed, 83: ErrPathNotAllowed, 87: ErrConnectionClosed,
	90: ErrIntegrity, 91: ErrIntegrity, 92: ErrIntegrity,
	11: ErrNotARepository, 12: ErrIntegrity, 16: ErrNotARepository, 17: ErrIntegrity, 21: ErrPathNotAllowed,
	25: ErrNotARepository, 32: ErrIntegrity, 43: ErrNotARepository, 46: ErrNotARepository,
	61: ErrIntegrity, 62: ErrRepoNotFound, 63: ErrIntegrity, 64: ErrIntegrity, 84: ErrConnectionClosed, 86: ErrConnectionClosed,
	95: ErrIntegrity, 96: ErrIntegrity, 97: ErrIntegrity, 98: ErrIntegrity, 99: ErrIntegrity,
}

// textKinds recognise failures that borg only reports as text: ssh's own messages reach us as
// plain (or "Remote: ") stderr lines, and OS errors as "[Errno 28]".
var textKinds = []struct {
	substr string
	kind   error
}{
	{"Host key verification failed", ErrHostKey},
	{"REMOTE HOST IDENTIFICATION HAS CHANGED", ErrHostKey},
	{"No ED25519 host key is known", ErrHostKey},
	{"host key is known for", ErrHostKey},
	{"Permission denied (publickey", ErrAuth},
	{"No space left on device", ErrNoSpace},
	{"[Errno 28]", ErrNoSpace},
	{"Failed to create/acquire the lock", ErrLockTimeout},
	{"Connection refused", ErrConnectionClosed},
	{"Could not resolve hostname", ErrConnectionClosed},
	{"Connection timed out", ErrConnectionClosed},
	{"No route to host", ErrConnectionClosed},
	{"Network is unreachable", ErrConnectionClosed},
	{"is not a valid repository", ErrNotARepository},
	// A connection that dropped while borg was sending: its own exceptions, or the per-file
	// "[Errno 32] Broken pipe" warnings it prints before giving up with "Local Exception".
	{"Connection closed by remote host", ErrConnectionClosed},
	{"BrokenPipeError", ErrConnectionClosed},
	{"ConnectionResetError", ErrConnectionClosed},
	{"[Errno 32] Broken pipe", ErrConnectionClosed},
	{"[Errno 104] Connection reset", ErrConnectionClosed},
}

// Error is a failed borg run.
type Error struct {
	Verb     string // init, create, ...
	Target   string // repository or archive
	ExitCode int
	MsgID    string
	Message  string // borg's own error message, one line
	Detail   string // the tail of non-JSON stderr (ssh messages), for -v
	Kind     error  // one of the Err* values, or nil when unknown
}

func (e *Error) Error() string {
	what := e.Message
	if what == "" && e.Kind != nil {
		what = e.Kind.Error()
	}
	if what == "" {
		what = lastLine(e.Detail)
	}
	if what == "" {
		what = fmt.Sprintf("exit status %d", e.ExitCode)
	}
	if e.Kind == ErrHostKey || e.Kind == ErrAuth || (e.Kind == ErrConnectionClosed && e.Detail != "") {
		// ssh's own words say more than borg's "Connection closed by remote host".
		if d := lastLine(e.Detail); d != "" && !strings.Contains(what, d) {
			what += " (" + d + ")"
		}
	}
	return fmt.Sprintf("borg %s %s: %s", e.Verb, e.Target, oneLine(what))
}

func (e *Error) Unwrap() error { return e.Kind }

// Hint says what to do next, in one sentence.
func (e *Error) Hint() string { return Hint(e.Kind) }

// Hint gives the next step for a kind of failure.
func Hint(kind error) string {
	switch kind {
	case ErrPassphraseWrong:
		return "the passphrase does not open this repository's key: check --passphrase-file (or BORG_PASSPHRASE / BORG_PASSCOMMAND)"
	case ErrNoPassphrase:
		return "give the passphrase with --passphrase-file (mode 0600), BORG_PASSPHRASE or BORG_PASSCOMMAND"
	case ErrRepoNotFound:
		return "create the repository first with `cht-backup init`, or check the --repo path"
	case ErrRepoExists:
		return "a repository is already there; use it, or choose another --repo path"
	case ErrArchiveNotFound:
		return "list the archives with `cht-backup archives` and use one of those names"
	case ErrLockTimeout:
		return "another borg process holds the repository lock; wait for it to finish (if none is running, `borg break-lock REPO` clears a stale lock)"
	case ErrConnectionClosed:
		return "check the network path to the backup server and that borg is installed there; run `cht-backup preflight`"
	case ErrHostKey:
		return "the backup server's host key is unknown or changed; run `cht-backup preflight` to see its fingerprint and how to add it"
	case ErrAuth:
		return "add this host's public key to the backup server's authorized_keys (`cht-backup init` prints the line)"
	case ErrPathNotAllowed:
		return "the server's forced command restricts this key to another path; fix --repo or the --restrict-to-path on the server"
	case ErrNoSpace:
		return "free space on the backup server (or the local disk holding the borg cache) and run again; existing archives are intact"
	case ErrIntegrity:
		return "run `cht-backup check` and keep the repository untouched until the cause is known"
	case ErrCancelled:
		return "the run was interrupted; run it again (borg left the repository consistent)"
	case ErrReadOnly:
		return "borg cannot write there: the file system is read-only for this run; under the systemd units a path outside their ReadWritePaths= is read-only: run `cht-backup schedule install` again so the units cover it"
	case ErrNotARepository:
		return "the path holds something that is not a borg repository of a supported kind; choose another --repo"
	}
	return "run again with -v to see borg's full output"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "Remote:"))
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

// classify picks the kind of a failure: msgid first, then modern exit code, then known text.
func classify(msgid string, code int, modern bool, text string) error {
	// A lock borg cannot create on a read-only file system is LockFailed, not someone's lock.
	if strings.Contains(text, "Read-only file system") || strings.Contains(text, "[Errno 30]") {
		return ErrReadOnly
	}
	if k, ok := msgidKinds[msgid]; ok {
		if k == ErrConnectionClosed {
			// ssh failed before borg could talk: ssh's text is more exact.
			if tk := textKind(text); tk != nil {
				return tk
			}
		}
		return k
	}
	if modern {
		if k, ok := modernCodeKinds[code]; ok {
			return k
		}
	}
	if code >= 128 {
		return ErrCancelled
	}
	return textKind(text)
}

func textKind(text string) error {
	for _, tk := range textKinds {
		if strings.Contains(text, tk.substr) {
			return tk.kind
		}
	}
	return nil
}
