package state

// CouchDBDrill is what CouchDB said when a restore drill started it on a restored copy: recorded
// with verify and in-place restore runs, and exported as metrics.
type CouchDBDrill struct {
	Status    string            `json:"status"` // "passed", "failed" or "not run"
	Reason    string            `json:"reason,omitempty"`
	Image     string            `json:"image,omitempty"`
	Version   string            `json:"version,omitempty"`
	Reference string            `json:"reference,omitempty"`
	Databases []CouchDBDatabase `json:"databases,omitempty"`
}

// CouchDBDatabase is one database's finding: its figures in the restored copy, and whether they
// reach those the live CouchDB gave at backup time.
type CouchDBDatabase struct {
	Name        string `json:"name"`
	OK          bool   `json:"ok"`
	DocCount    int64  `json:"doc_count"`
	DocDelCount int64  `json:"doc_del_count"`
	UpdateSeq   int64  `json:"update_seq"`
	Problem     string `json:"problem,omitempty"`
}

// couchDBFamilies renders the last CouchDB drill of each job and repository.
func couchDBFamilies(f *File) []*metricFamily {
	fam := func(name, help string) *metricFamily { return &metricFamily{name: "cht_backup_" + name, help: help} }
	status := fam("couchdb_drill_status", "Last CouchDB drill of the job for the repository: 1 passed, 0 failed, -1 not run (no Docker or no CouchDB image, or --couchdb never).")
	dbOK := fam("couchdb_drill_database_ok", "1 if CouchDB opened the database in the restored copy with at least the figures the live CouchDB gave at backup time.")
	docs := fam("couchdb_drill_database_docs", "doc_count + doc_del_count of the database in the restored copy, as CouchDB gave them in the last drill.")
	for _, e := range f.Entries {
		d := e.LastRun.CouchDB
		if d == nil {
			continue
		}
		l := [][2]string{{"job", e.Job}, {"repository", e.Repository}}
		v := -1.0
		switch d.Status {
		case "passed":
			v = 1
		case "failed":
			v = 0
		}
		status.add(l, v)
		for _, db := range d.Databases {
			dl := append(append([][2]string{}, l...), [2]string{"database", db.Name})
			dbOK.add(dl, b2f(db.OK))
			docs.add(dl, float64(db.DocCount+db.DocDelCount))
		}
	}
	return []*metricFamily{status, dbOK, docs}
}
