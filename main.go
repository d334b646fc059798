// Command cht-backup makes backups of Community Health Toolkit servers real: it checks the path to
// the backup server, creates an encrypted append-only borg repository, gathers everything a CHT
// server needs to come back, archives it with borg, proves archives restore, and restores them.
//
// main.go wires the commands; each command lives in cmd_<name>.go and calls a plain function.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cht-backup/cht-backup/borg"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes, documented in the README.
const (
	exitOK          = 0
	exitWarning     = 1   // finished, with warnings (e.g. a file changed while it was read)
	exitFailed      = 2   // the job failed
	exitUsage       = 3   // bad command line or configuration; nothing was done
	exitLocked      = 75  // another run held this host's lock past --lock-wait; nothing was done (EX_TEMPFAIL)
	exitInterrupted = 130 // stopped by SIGINT/SIGTERM; borg was stopped cleanly
)

func newApp() *cli.App {
	// -v is --verbose here; the version has only its long flag.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version, the commit and the borg found"}
	cli.VersionPrinter = printVersion
	app := &cli.App{
		Name:    "cht-backup",
		Usage:   "encrypted, append-only, proven-restorable borg backups of a CHT server",
		Version: version,
		Commands: []*cli.Command{
			preflightCommand(),
			initCommand(),
			backupCommand(),
			archivesCommand(),
			statusCommand(),
			scheduleCommand(),
			checkCommand(),
			keyCommand(),
			restoreCommand(), verifyCommand(),
			completionCommand(), manCommand(),
		},
		HideHelpCommand: true,
		// Errors are printed once, by main, with their hint.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageErrorf("%v", err)
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(os.Stderr, "cht-backup: unknown command %q; run `cht-backup --help` for the list\n", name)
			os.Exit(exitUsage)
		},
	}
	app.Description = appDescription
	for _, cmd := range app.Commands {
		prepareCommand(cmd)
	}
	return app
}

// prepareCommand gives every (sub)command the common flags and a usage-error handler.
func prepareCommand(cmd *cli.Command) {
	cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error { return usageErrorf("%v", err) }
	if len(cmd.Subcommands) > 0 {
		for _, sub := range cmd.Subcommands {
			prepareCommand(sub)
		}
		return
	}
	cmd.Flags = append(commonFlags(), cmd.Flags...)
}

func main() {
	os.Exit(run(os.Args))
}

// run is main without os.Exit, so tests can call it.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	app := newApp()
	err := app.RunContext(ctx, reorderArgs(app, args))
	code := exitCode(err)
	if err != nil && code != exitWarning {
		printError(err)
	}
	finishOutput()
	if ctx.Err() != nil && code == exitFailed {
		code = exitInterrupted
	}
	return code
}

// userError is an error meant for the user: what failed and why, plus what to do next.
type userError struct {
	err   error
	hint  string
	code  int
	quiet bool // the command already said everything (e.g. the preflight checklist)
}

func (e *userError) Error() string { return e.err.Error() }
func (e *userError) Unwrap() error { return e.err }
func (e *userError) Hint() string  { return e.hint }

func usageErrorf(format string, a ...any) error {
	return &userError{err: fmt.Errorf(format, a...), hint: "run `cht-backup COMMAND --help` for the flags", code: exitUsage}
}

// warnings ends a run that finished but has something to say (exit 1).
type warnings struct{ n int }

func (w warnings) Error() string { return fmt.Sprintf("finished with %d warning(s)", w.n) }

// exitCode maps errors to the documented exit codes in one place.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var w warnings
	if errors.As(err, &w) {
		return exitWarning
	}
	var ue *userError
	if errors.As(err, &ue) && ue.code != 0 {
		return ue.code
	}
	if errors.Is(err, borg.ErrCancelled) || errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitFailed
}

// printError writes the error and, on its own line, what to do next.
func printError(err error) {
	var ue *userError
	if errors.As(err, &ue) && ue.quiet {
		return
	}
	var h interface{ Hint() string }
	hint := ""
	if errors.As(err, &h) {
		hint = h.Hint()
	}
	errorLines(oneLine(err.Error()), hint)
}

// firstLine is the first non-empty line of s.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// reorderArgs lets users put flags after positional arguments (`restore NAME --target DIR`) and
// before the command (`-v backup`): urfave/cli v2 stops parsing flags at the first argument, so
// flags are moved in front of the arguments of the command they belong to.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var before []string // flags given before the command name
	i := 1
	var cmd *cli.Command
	var path []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") {
			if a == "-h" || a == "--help" || a == "--version" {
				return args
			}
			before = append(before, a)
			if takesValue(commonFlags(), a) && !strings.Contains(a, "=") && i+1 < len(args) {
				i++
				before = append(before, args[i])
			}
			continue
		}
		cmd = findCommand(app.Commands, a)
		if cmd == nil {
			return args // unknown command: let cli report it
		}
		path = append(path, a)
		for len(cmd.Subcommands) > 0 && i+1 < len(args) {
			sub := findCommand(cmd.Subcommands, args[i+1])
			if sub == nil {
				break
			}
			i++
			cmd = sub
			path = append(path, args[i])
		}
		i++
		break
	}
	if cmd == nil {
		return args
	}
	flags := append([]cli.Flag{}, commonFlags()...)
	flags = append(flags, cmd.Flags...)
	var fl, pos []string
	fl = append(fl, before...)
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			fl = append(fl, a)
			if takesValue(flags, a) && !strings.Contains(a, "=") && i+1 < len(args) {
				i++
				fl = append(fl, args[i])
			}
			continue
		}
		pos = append(pos, a)
	}
	out := append([]string{args[0]}, path...)
	out = append(out, fl...)
	if len(pos) > 0 && pos[0] != "--" {
		out = append(out, "--")
	}
	return append(out, pos...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether flag token a (e.g. "--repo", "-v") needs the next token as its value.
func takesValue(flags []cli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}

// withOptions is the shape of every command's action: check the arguments, resolve the
// settings, run.
func withOptions(checkArgs func(*cli.Context) error, run func(c *cli.Context, o *options) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if checkArgs != nil {
			if err := checkArgs(c); err != nil {
				return err
			}
		}
		o, err := loadOptions(c)
		if err != nil {
			return configFailure(c, err)
		}
		return run(c, o)
	}
}

// writeJSON prints a command's --json result.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// noArgs and maxArgs make a command given arguments it does not take fail clearly.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("%s takes no arguments, got %q", c.Command.FullName(), c.Args().Slice())
	}
	return nil
}

func maxArgs(c *cli.Context, n int, what string) error {
	if c.NArg() > n {
		return usageErrorf("%s takes at most %s, got %q", c.Command.FullName(), what, c.Args().Slice())
	}
	return nil
}

// newLogger sets up logrus: readable text on a terminal, JSON for journald and log shippers.
func newLogger(format string, verbose bool) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	if verbose {
		l.SetLevel(logrus.DebugLevel)
	}
	switch format {
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	case "text":
		l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	default:
		if isTerminal(os.Stderr) {
			l.SetFormatter(&logrus.TextFormatter{FullTimestamp: false})
		} else {
			l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
		}
	}
	return l
}

// isTerminal asks the kernel whether f is a terminal: /dev/null is a character device too, and
// a timer run's stdin or stderr must not count as one.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
