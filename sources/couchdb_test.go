package sources

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSeqNumber(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want int64
		ok   bool
	}{
		{`"1234-g1AAAAFTeJzLYWBg4MhgTmHgz8tPSTV0MDQy1zMAQsMcoARTIkOS_P___7MymBMZc4EC7EbGJqmWJubYdOAxKY8FSDI0AKn_UJMYwSYZmSclpiSbYtOFx6QEkEn1YJOY" `, 1234, true},
		{`"0-g1AAAA"`, 0, true},
		{`17`, 17, true},
		{`"abc-def"`, 0, false},
		{`null`, 0, false},
	} {
		got, err := SeqNumber(json.RawMessage(tt.raw))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("SeqNumber(%s) = %d, %v; want %d, ok %v", tt.raw, got, err, tt.want, tt.ok)
		}
	}
}

// A shard caught in CouchDB's compaction switch, with only its .couch.compact file in the list,
// still counts: CouchDB opens the database from that file. Beside its live file the .compact file
// counts for nothing.
func TestDatabasesOfCountsAShardCaughtInTheCompactionSwitch(t *testing.T) {
	dbs := DatabasesOf(map[string]int64{
		"shards/00000000-7fffffff/medic.1796134206.couch":         100,
		"shards/80000000-ffffffff/medic.1796134206.couch.compact": 80,
		"shards/00000000-7fffffff/users.1796134206.couch":         10,
		"shards/00000000-7fffffff/users.1796134206.couch.compact": 9,
	})
	got := map[string]Database{}
	for _, d := range dbs {
		got[d.Name] = d
	}
	if got["medic"].ShardFiles != 2 || got["medic"].Bytes != 180 {
		t.Errorf("medic: %+v, want both shards (one only as its .compact file)", got["medic"])
	}
	if got["users"].ShardFiles != 1 || got["users"].Bytes != 10 {
		t.Errorf("users: %+v, want the live shard only", got["users"])
	}
}

// The databases come sorted by name, so reports and manifests read the same on every run.
func TestDatabasesOfIsSortedByName(t *testing.T) {
	files := map[string]int64{}
	for _, name := range []string{"medic", "_users", "medic-sentinel", "account/team-a", "medic-users-meta"} {
		files["shards/00000000-ffffffff/"+name+".1.couch"] = 1
	}
	var names []string
	for _, d := range DatabasesOf(files) {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "_users,account/team-a,medic,medic-sentinel,medic-users-meta" {
		t.Errorf("databases in the order %s", got)
	}
}
