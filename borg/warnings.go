package borg

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// WarningKind says what one of borg create's warnings means for the archive it wrote.
type WarningKind int

const (
	// WarningOther is a warning about no file in particular (e.g. an include pattern that never
	// matched): reported, the archive is whole.
	WarningOther WarningKind = iota
	// WarningChanged: a file changed while borg read it. CouchDB appends while it runs, so this
	// is expected: the copy in the archive may be inconsistent and is read again next run.
	WarningChanged
	// WarningVanished: a file disappeared between borg listing and reading it, as when CouchDB
	// finishes a compaction or a database is deleted. Nothing that still exists is missing.
	WarningVanished
	// WarningReadError: a file that exists could not be read (permission denied, an I/O error on
	// a failing disk, ...). The archive lacks it: a failure of that archive.
	WarningReadError
	// WarningConnection: borg's per-file echo of a dropped connection to the backup server
	// ("read: [Errno 32] Broken pipe"). Noise: the run's error says what happened, once.
	WarningConnection
)

func (k WarningKind) String() string {
	switch k {
	case WarningChanged:
		return "changed while read"
	case WarningVanished:
		return "vanished while read"
	case WarningReadError:
		return "could not be read"
	case WarningConnection:
		return "connection dropped"
	}
	return "other"
}

// Benign reports whether a warning is something a live CouchDB does by itself: reported, never
// a failure.
func (k WarningKind) Benign() bool {
	return k == WarningChanged || k == WarningVanished || k == WarningOther
}

// errnoRE finds the errno in borg's wording of an OSError, "[Errno 13] Permission denied".
var errnoRE = regexp.MustCompile(`\[Errno (\d+)\]`)

// Linux errno values that mean the connection to the backup server went away under borg:
// EPIPE, ECONNRESET, ECONNABORTED, ETIMEDOUT on a socket or ssh's pipe.
var connectionErrnos = map[int]bool{32: true, 104: true, 103: true, 110: true}

// borg 1.4 names its per-file warnings (msgid, from BORG_EXIT_CODES=modern's warning classes).
var warningMsgIDs = map[string]WarningKind{
	"FileChangedWarning":                WarningChanged,
	"BackupRaceConditionError":          WarningChanged, // file type or inode changed while read: compaction
	"BackupFileNotFoundError":           WarningVanished,
	"BackupPermissionError":             WarningReadError,
	"BackupIOError":                     WarningReadError,
	"BackupOSError":                     WarningReadError,
	"BackupError":                       WarningReadError,
	"IncludePatternNeverMatchedWarning": WarningOther,
}

// classifyWarning decides what a borg warning means. borg 1.2 words a per-file problem as
// "<path>: [<op>: ][Errno N] <strerror>", borg 1.4 the same with a msgid; the errno decides,
// since borg 1.4's generic BackupWarning msgid wraps every kind.
func classifyWarning(w Warning) WarningKind {
	if strings.Contains(w.Message, "file changed while we backed it up") ||
		strings.Contains(w.Message, "changed while we backed it up") {
		return WarningChanged
	}
	if m := errnoRE.FindStringSubmatch(w.Message); m != nil {
		n, _ := strconv.Atoi(m[1])
		switch {
		case n == 2: // ENOENT
			return WarningVanished
		case connectionErrnos[n]:
			return WarningConnection
		default:
			return WarningReadError
		}
	}
	if k, ok := warningMsgIDs[w.MsgID]; ok {
		return k
	}
	return WarningOther
}

// modernReadErrorCodes are borg 1.4's exit codes (BORG_EXIT_CODES=modern) for a file it could not
// read: BackupError 102, BackupOSError 104, BackupPermissionError 105, BackupIOError 106.
var modernReadErrorCodes = map[int]bool{102: true, 104: true, 105: true, 106: true}

// ReadErrors returns the warnings of a create run that name a file borg could not read. When borg
// 1.4's exit code says so but no message named the file, it returns one saying that much.
func (res *Result) ReadErrors(modern bool) []Warning {
	var out []Warning
	for _, w := range res.Warnings {
		if w.Kind == WarningReadError {
			out = append(out, w)
		}
	}
	if len(out) == 0 && modern && modernReadErrorCodes[res.ExitCode] {
		out = append(out, Warning{Kind: WarningReadError, Message: fmt.Sprintf("borg exit code %d: a file could not be read (its message was lost)", res.ExitCode)})
	}
	return out
}

// Reported returns the warnings worth showing a person: without the per-file echo of a dropped
// connection, which the run's error already says once.
func (res *Result) Reported() []Warning {
	var out []Warning
	for _, w := range res.Warnings {
		if w.Kind != WarningConnection {
			out = append(out, w)
		}
	}
	return out
}

// ModernExitCodes reports whether borg runs with BORG_EXIT_CODES=modern (borg 1.4 and later).
func (r *Runner) ModernExitCodes() bool { return r.Version.modernExitCodes() }
