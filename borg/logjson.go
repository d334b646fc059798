package borg

import (
	"encoding/json"
	"strings"
)

// LogMessage is one borg log record (type "log_message" in --log-json output).
type LogMessage struct {
	Level   string  `json:"levelname"`
	Name    string  `json:"name"`
	Message string  `json:"message"`
	MsgID   string  `json:"msgid"`
	Time    float64 `json:"time"`
}

// Progress is one progress event: archive_progress (create), progress_percent or progress_message.
type Progress struct {
	Type      string  `json:"type"`
	Finished  bool    `json:"finished"`
	Path      string  `json:"path"`
	NFiles    int64   `json:"nfiles"`
	OSize     int64   `json:"original_size"`
	CSize     int64   `json:"compressed_size"`
	DSize     int64   `json:"deduplicated_size"`
	Current   float64 `json:"current"`
	Total     float64 `json:"total"`
	Message   string  `json:"message"`
	MsgID     string  `json:"msgid"`
	Time      float64 `json:"time"`
	Operation int     `json:"operation"`
}

// FileStatus is one --list line (type "file_status").
type FileStatus struct {
	Status string `json:"status"`
	Path   string `json:"path"`
}

// event is one decoded stderr line; exactly one field is set.
type event struct {
	log      *LogMessage
	progress *Progress
	file     *FileStatus
	text     string // not JSON: ssh's own stderr, "Remote: ..." lines, tracebacks
}

// decodeLine turns one line of borg's stderr into an event.
func decodeLine(line string) event {
	trimmed := strings.TrimSpace(line)
	if !strings.HasPrefix(trimmed, "{") {
		return event{text: strings.TrimRight(line, "\r\n")}
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(trimmed), &head); err != nil {
		return event{text: trimmed}
	}
	switch head.Type {
	case "log_message":
		var m LogMessage
		if json.Unmarshal([]byte(trimmed), &m) == nil {
			return event{log: &m}
		}
	case "archive_progress", "progress_percent", "progress_message":
		var p Progress
		if json.Unmarshal([]byte(trimmed), &p) == nil {
			return event{progress: &p}
		}
	case "file_status":
		var f FileStatus
		if json.Unmarshal([]byte(trimmed), &f) == nil {
			return event{file: &f}
		}
	}
	return event{text: trimmed}
}

// Warning is one thing borg warned about, with the affected path when borg named one.
type Warning struct {
	Path    string
	Message string
	MsgID   string
	Kind    WarningKind // what it means for the archive (classifyWarning)
}

// warningSuffixes are how borg 1.2 words per-file warnings: "<path>: <reason>".
var warningSuffixes = []string{
	": file changed while we backed it up",
	": [Errno 2] No such file or directory",
	": [Errno 13] Permission denied",
	": Include pattern",
}

// parseWarning splits "<path>: <reason>" when the reason is one borg uses for files.
func parseWarning(m LogMessage) Warning {
	w := Warning{Message: m.Message, MsgID: m.MsgID}
	w.Kind = classifyWarning(w)
	for _, suf := range warningSuffixes {
		if i := strings.Index(m.Message, suf); i > 0 {
			w.Path = m.Message[:i]
			break
		}
	}
	if i := strings.Index(m.Message, ": [Errno "); i > 0 && w.Path == "" {
		w.Path = m.Message[:i]
	}
	// "<path>: open: [Errno 13] ..." and "<path>: read: [Errno 5] ...": the operation sits between.
	if i := strings.Index(w.Path, ": "); i > 0 && !strings.Contains(w.Path[i+2:], "/") {
		w.Path = w.Path[:i]
	}
	return w
}
