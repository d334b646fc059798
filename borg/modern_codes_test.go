package borg

import "testing"

// borg14Codes are borg 1.4.0's msgids (exception class names, as --log-json gives them) and the
// exit code each has with BORG_EXIT_CODES=modern, as borg 1.4.0's sources define them.
var borg14Codes = map[string]int{
	"Repository.AlreadyExists": 10, "Repository.AtticRepository": 11, "Repository.CheckNeeded": 12,
	"Repository.DoesNotExist": 13, "Repository.InsufficientFreeSpaceError": 14, "Repository.InvalidRepository": 15,
	"Repository.InvalidRepositoryConfig": 16, "Repository.ObjectNotFound": 17, "Repository.ParentPathDoesNotExist": 18,
	"Repository.PathAlreadyExists": 19, "Repository.StorageQuotaExceeded": 20, "Repository.PathPermissionDenied": 21,
	"MandatoryFeatureUnsupported": 25,
	"Archive.AlreadyExists":       30, "Archive.DoesNotExist": 31, "Archive.IncompatibleFilesystemEncodingError": 32,
	"NotABorgKeyFile": 43, "UnencryptedRepo": 46,
	"NoPassphraseFailure": 50, "PasscommandFailure": 51, "PassphraseWrong": 52, "PasswordRetriesExceeded": 53,
	"Cache.EncryptionMethodMismatch": 61, "Cache.RepositoryAccessAborted": 62, "Cache.RepositoryIDNotUnique": 63,
	"Cache.RepositoryReplay": 64,
	"LockFailed":             72, "LockTimeout": 73,
	"ConnectionClosed": 80, "ConnectionClosedWithHint": 81, "PathNotAllowed": 83, "RemoteRepository.RPCServerOutdated": 84,
	"UnexpectedRPCDataFormatFromServer": 86, "ConnectionBrokenWithHint": 87,
	"IntegrityError": 90, "FileIntegrityError": 91, "DecompressionError": 92,
	"ArchiveTAMInvalid": 95, "ArchiveTAMRequiredError": 96, "TAMInvalid": 97, "TAMRequiredError": 98,
	"TAMUnsupportedSuiteError": 99,
}

// A failure borg 1.4 reports only by its modern exit code (before its logging is set up, so with
// no msgid) is classified exactly as the msgid borg 1.2 and 1.4 log for it.
func TestModernExitCodesMapAsMsgids(t *testing.T) {
	for msgid, kind := range msgidKinds {
		code, ok := borg14Codes[msgid]
		if !ok {
			if msgid != "Signal.SIGTERM" && msgid != "Signal.SIGHUP" { // log msgids of signals, no exception class
				t.Errorf("msgid %q is not one borg 1.4 has", msgid)
			}
			continue
		}
		if got := classify("", code, true, ""); got != kind {
			t.Errorf("modern exit code %d (%s) classifies as %v, its msgid as %v", code, msgid, got, kind)
		}
	}
	for msgid, code := range borg14Codes {
		if _, ok := msgidKinds[msgid]; !ok {
			t.Errorf("borg 1.4 msgid %q (exit code %d) has no kind", msgid, code)
		}
	}
}
