package borg

import (
	"fmt"
	"regexp"
	"strconv"
)

// Version is a borg release number.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is o or newer.
func (v Version) AtLeast(o Version) bool {
	if v.Major != o.Major {
		return v.Major > o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor > o.Minor
	}
	return v.Patch >= o.Patch
}

var versionRe = regexp.MustCompile(`(\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads "borg 1.2.4", "borg 1.4.0b1", "1.2.8" and the like.
func ParseVersion(s string) (Version, error) {
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("cannot read a borg version from %q", s)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// CheckSupported refuses what this tool was not built and tested for: borg before 1.2 lacks
// features and fixes we rely on (and 1.1 is end of life); borg 2 has another command line and
// repository format.
func CheckSupported(v Version) error {
	switch {
	case v.Major == 1 && v.Minor == 2, v.Major == 1 && v.Minor == 4:
		return nil
	case v.Major == 1 && v.Minor < 2, v.Major < 1:
		return fmt.Errorf("borg %s is too old: cht-backup needs borg 1.2.x or 1.4.x (install a newer borgbackup package)", v)
	default:
		return fmt.Errorf("borg %s is not supported: cht-backup works with borg 1.2.x and 1.4.x (install one of those)", v)
	}
}

// modernExitCodes reports whether this borg can be asked for specific exit codes (BORG_EXIT_CODES=modern).
func (v Version) modernExitCodes() bool { return v.AtLeast(Version{1, 4, 0}) }
