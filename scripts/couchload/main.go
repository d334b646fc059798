// Command couchload writes CHT-like documents (reports, persons, clinics) into a real CouchDB and
// reads two views so their indexes are built, as a day of a CHT server's use does. scripts/bench.sh
// uses it to measure what a night's backup stores against the growth of the data directory.
//
//	go run ./scripts/couchload -url http://172.17.0.2:5984 -user admin -pass secret -db medic -n 2000 -seed 7
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"strings"
)

var words = strings.Fields("fever cough malaria pregnancy visit danger sign referral immunization assessment follow up household")

func main() {
	url := flag.String("url", "", "CouchDB base URL")
	user := flag.String("user", "admin", "admin user")
	pass := flag.String("pass", "secret", "admin password")
	db := flag.String("db", "medic", "database (created when missing)")
	n := flag.Int("n", 1000, "documents to write")
	seed := flag.Int64("seed", 1, "seed of the document contents")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "couchload: -url is required")
		os.Exit(3)
	}
	c := client{base: strings.TrimSuffix(*url, "/"), user: *user, pass: *pass}
	if err := run(c, *db, *n, rand.New(rand.NewSource(*seed)), *seed); err != nil {
		fmt.Fprintln(os.Stderr, "couchload:", err)
		os.Exit(2)
	}
}

type client struct{ base, user, pass string }

func (c client) do(method, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusPreconditionFailed && resp.StatusCode != http.StatusConflict {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

func run(c client, db string, n int, rnd *rand.Rand, seed int64) error {
	if err := c.do("PUT", "/"+db, nil); err != nil {
		return err
	}
	design := map[string]any{"views": map[string]any{
		"by_type":    map[string]string{"map": "function(d){ if (d.type) emit([d.type, d.reported_date], d.patient_id); }"},
		"by_patient": map[string]string{"map": "function(d){ if (d.patient_id) emit(d.patient_id, null); }"},
	}}
	if err := c.do("PUT", "/"+db+"/_design/medic", design); err != nil {
		return err
	}
	var batch []map[string]any
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.do("POST", "/"+db+"/_bulk_docs", map[string]any{"docs": batch})
		batch = batch[:0]
		return err
	}
	for i := 0; i < n; i++ {
		fields := map[string]string{}
		for _, w := range rnd.Perm(len(words))[:8] {
			var s []string
			for j := 3 + rnd.Intn(9); j > 0; j-- {
				s = append(s, words[rnd.Intn(len(words))])
			}
			fields[words[w]] = strings.Join(s, " ")
		}
		batch = append(batch, map[string]any{
			"_id":           fmt.Sprintf("%08x-%d-%d", rnd.Uint32(), seed, i),
			"type":          []string{"data_record", "person", "clinic"}[rnd.Intn(3)],
			"reported_date": 1700000000000 + rnd.Int63n(1e9),
			"patient_id":    fmt.Sprint(rnd.Intn(1e6)),
			"form":          []string{"pregnancy_home_visit", "assessment", "delivery"}[rnd.Intn(3)],
			"fields":        fields,
			"contact":       map[string]any{"_id": fmt.Sprintf("%x", rnd.Uint64()), "parent": map[string]string{"_id": fmt.Sprintf("%x", rnd.Uint64())}},
		})
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for _, v := range []string{"by_type", "by_patient"} {
		if err := c.do("GET", "/"+db+"/_design/medic/_view/"+v+"?limit=1", nil); err != nil {
			return err
		}
	}
	return nil
}
