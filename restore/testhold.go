package restore

// TestHoldEnv is for the end-to-end tests alone, never a user setting. In a binary built with
// the build tag testhold (the tests build theirs so), set to a step's short name (stop, move,
// start), it makes an in-place restore wait after the first action of that step (the first
// container stopped, the first path moved aside, the first container started) until the run is
// interrupted, or a minute passes. Those actions take microseconds, so a test could not otherwise
// interrupt a restore in the middle of them, with the host half-changed, reliably. Set to
// "gather", it makes a backup wait after gathering the host, before borg create, until SIGUSR1
// (see holdAfterGather in package main). The wait is announced in the log, which is what the
// tests watch for. A binary built without the tag, as every release is, ignores the variable.
const TestHoldEnv = "CHT_BACKUP_TEST_HOLD_AFTER"
