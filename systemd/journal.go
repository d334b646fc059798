package systemd

import (
	"fmt"
	"os"
	"syscall"
)

// Journal priorities (syslog levels) a line can carry.
const (
	PriErr     = 3
	PriWarning = 4
	PriNotice  = 5
	PriInfo    = 6
	PriDebug   = 7
)

// JournalStream reports whether f is connected to the journal. systemd sets JOURNAL_STREAM to
// the "DEVICE:INODE" of the stream it gave the unit; an inherited variable with another stream
// (output redirected to a file) does not count.
func JournalStream(f *os.File) bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" || f == nil {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(v, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// Prefix is the sd-daemon(3) priority prefix journald reads off the start of a line ("<3>"),
// stores as the entry's PRIORITY and strips from its MESSAGE.
func Prefix(priority int) string { return fmt.Sprintf("<%d>", priority) }
