// Package state owns what cht-backup remembers between runs and what it tells monitoring: the
// host run lock (one run at a time), the state file <state-dir>/state.json (each job's last run
// and last success per repository), the Prometheus textfile-collector file, and health-check
// pings in the healthchecks.io convention.
//
// Every file here is written atomically (temporary file, fsync, rename), so a reader such as
// `cht-backup status` or node_exporter never sees half a file, even when a run is killed.
package state
