// Package clidoc turns the command-line definition (the urfave/cli App) into what a packaged tool
// ships beside its binary: the man page and bash and zsh completion. Nothing here is written by
// hand per command, so a new command or flag shows up in all of them by itself.
package clidoc

import (
	"fmt"
	"github.com/cht-backup/cht-backup/borg"
	"sort"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"
)

// Man renders the man page (section 1, roff) with urfave/cli's own generator. The flags in common
// (given to every command, accepted before or after the command name) are listed once, as global
// options, instead of under each command.
func Man(app *cli.App, common []cli.Flag) (string, error) {
	isCommon := map[string]bool{}
	for _, f := range common {
		for _, n := range f.Names() {
			isCommon[n] = true
		}
	}
	doc := &cli.App{
		Name:        app.Name,
		Usage:       app.Usage,
		UsageText:   app.Name + " [GLOBAL OPTIONS] command [COMMAND OPTIONS] [ARGUMENTS...]",
		Description: app.Description,
		Flags:       append(append([]cli.Flag{}, common...), cli.HelpFlag, cli.VersionFlag),
		Commands:    withoutFlags(app.Commands, isCommon),
	}
	md, err := doc.ToMarkdown()
	if err != nil {
		return "", err
	}
	return string(md2man.Render([]byte("% " + app.Name + " 1\n\n" + escapeMarkdown(md)))), nil
}

// withoutFlags copies the command tree without the named flags.
func withoutFlags(cmds []*cli.Command, drop map[string]bool) []*cli.Command {
	out := make([]*cli.Command, 0, len(cmds))
	for _, c := range cmds {
		cc := *c
		cc.Flags = nil
		for _, f := range c.Flags {
			if !drop[f.Names()[0]] {
				cc.Flags = append(cc.Flags, f)
			}
		}
		cc.Subcommands = withoutFlags(c.Subcommands, drop)
		out = append(out, &cc)
	}
	return out
}

// escapeMarkdown keeps usage text literal in the man page: urfave/cli writes it into markdown as
// is, where CHT_BACKUP_REPO would turn into emphasis and <state-dir> into an HTML tag. Fenced
// blocks and `code` spans are left alone.
func escapeMarkdown(md string) string {
	lines := strings.Split(md, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		var b strings.Builder
		inCode := false
		rs := []rune(l)
		for j, r := range rs {
			if r == '`' {
				inCode = !inCode
			}
			// ** around a flag name is urfave/cli's own bold; a lone * is text (*-*-* 02:30:00)
			lone := r == '*' && (j == 0 || rs[j-1] != '*') && (j+1 == len(rs) || rs[j+1] != '*')
			if !inCode && (r == '_' || r == '<' || r == '>' || lone) {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		lines[i] = b.String()
	}
	return strings.Join(lines, "\n")
}

// Shells are the shells Completion knows.
var Shells = []string{"bash", "zsh"}

// Completion renders the completion script for shell.
func Completion(app *cli.App, shell string) (string, error) {
	t := walk(app)
	switch shell {
	case "bash":
		return bashScript(app.Name, t), nil
	case "zsh":
		return zshScript(app.Name, t), nil
	}
	return "", fmt.Errorf("no completion for shell %q: choose one of %s", shell, strings.Join(Shells, ", "))
}

// word is one completion candidate with its description.
type word struct{ name, usage string }

// level is what can follow a command path: its subcommands, or its flags.
type level struct {
	path  string // "" for the top, " schedule print" below (each name led by a space)
	words []word
}

// tree is the command structure as completion sees it.
type tree struct {
	levels     []level
	valueFlags []string // flags that take the next word as their value (files, URLs, durations)
}

func walk(app *cli.App) tree {
	var t tree
	seenValue := map[string]bool{}
	// urfave/cli adds a help command and the help and version flags while it runs; they are
	// taken from the definitions here, so the script is the same whenever it is made.
	skip := func(c *cli.Command) bool { return c.Hidden || c.Name == "help" }
	var visit func(path string, cmds []*cli.Command, flags []cli.Flag, top bool)
	visit = func(path string, cmds []*cli.Command, flags []cli.Flag, top bool) {
		l := level{path: path}
		seen := map[string]bool{}
		add := func(name, usage string) {
			if !seen[name] {
				seen[name] = true
				l.words = append(l.words, word{name, usage})
			}
		}
		for _, c := range cmds {
			if !skip(c) {
				for _, n := range c.Names() {
					add(n, c.Usage)
				}
			}
		}
		if top {
			flags = append(flags, cli.VersionFlag)
		}
		for _, f := range append(flags, cli.HelpFlag) {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			usage, takesValue := "", false
			if d, ok := f.(cli.DocGenerationFlag); ok {
				usage, takesValue = d.GetUsage(), d.TakesValue()
			}
			for _, n := range f.Names() {
				spelled := flagSpelling(n)
				add(spelled, usage)
				if takesValue && !seenValue[spelled] {
					seenValue[spelled] = true
					t.valueFlags = append(t.valueFlags, spelled)
				}
			}
		}
		t.levels = append(t.levels, l)
		for _, c := range cmds {
			if skip(c) {
				continue
			}
			for _, n := range c.Names() {
				visit(path+" "+n, c.Subcommands, c.Flags, false)
			}
		}
	}
	visit("", app.Commands, app.Flags, true)
	sort.Strings(t.valueFlags)
	return t
}

func flagSpelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// commandPaths are the levels that are commands (every level but the top).
func (t tree) commandPaths() []string {
	var paths []string
	for _, l := range t.levels {
		if l.path != "" {
			paths = append(paths, l.path)
		}
	}
	return paths
}

// funcName is a shell function name for the program.
func funcName(prog string) string {
	return "_" + strings.NewReplacer("-", "_", ".", "_").Replace(prog)
}

// quotedPaths are the command paths as shell words, for a case pattern in bash or zsh.
func (t tree) quotedPaths() []string {
	var quoted []string
	for _, p := range t.commandPaths() {
		quoted = append(quoted, borg.ShellQuote(p))
	}
	return quoted
}

func bashScript(prog string, t tree) string {
	var b strings.Builder
	fn := funcName(prog)
	fmt.Fprintf(&b, "# bash completion for %s, generated from its command definitions by `%s completion bash`.\n", prog, prog)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString("    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\" cmd=\"\" w i\n")
	b.WriteString("    # The command path: words that name a command, flags and flag values skipped.\n")
	b.WriteString("    for ((i = 1; i < COMP_CWORD; i++)); do\n")
	b.WriteString("        w=\"${COMP_WORDS[i]}\"\n")
	b.WriteString("        case \"$w\" in -*) continue ;; esac\n")
	if len(t.valueFlags) > 0 {
		fmt.Fprintf(&b, "        case \"${COMP_WORDS[i-1]}\" in %s) continue ;; esac\n", strings.Join(t.valueFlags, "|"))
	}
	if quoted := t.quotedPaths(); len(quoted) > 0 {
		fmt.Fprintf(&b, "        case \"$cmd $w\" in %s) cmd=\"$cmd $w\" ;; esac\n", strings.Join(quoted, "|"))
	}
	b.WriteString("    done\n")
	if len(t.valueFlags) > 0 {
		fmt.Fprintf(&b, "    case \"$prev\" in %s)\n", strings.Join(t.valueFlags, "|"))
		b.WriteString("        COMPREPLY=($(compgen -f -- \"$cur\"))\n")
		b.WriteString("        return 0 ;;\n")
		b.WriteString("    esac\n")
	}
	b.WriteString("    local words=\"\"\n")
	b.WriteString("    case \"$cmd\" in\n")
	for _, l := range t.levels {
		names := make([]string, len(l.words))
		for i, w := range l.words {
			names[i] = w.name
		}
		fmt.Fprintf(&b, "    %s) words=%s ;;\n", borg.ShellQuote(l.path), borg.ShellQuote(strings.Join(names, " ")))
	}
	b.WriteString("    esac\n")
	b.WriteString("    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n")
	b.WriteString("}\n")
	fmt.Fprintf(&b, "complete -o bashdefault -o default -F %s %s\n", fn, prog)
	return b.String()
}

func zshScript(prog string, t tree) string {
	var b strings.Builder
	fn := funcName(prog)
	fmt.Fprintf(&b, "#compdef %s\n", prog)
	fmt.Fprintf(&b, "# zsh completion for %s, generated from its command definitions by `%s completion zsh`.\n", prog, prog)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString("    local cmd=\"\" w i\n")
	b.WriteString("    local -a opts\n")
	b.WriteString("    # The command path: words that name a command, flags and flag values skipped.\n")
	b.WriteString("    for ((i = 2; i < CURRENT; i++)); do\n")
	b.WriteString("        w=${words[i]}\n")
	b.WriteString("        [[ $w == -* ]] && continue\n")
	if len(t.valueFlags) > 0 {
		fmt.Fprintf(&b, "        case ${words[i-1]} in (%s) continue ;; esac\n", strings.Join(t.valueFlags, "|"))
	}
	if quoted := t.quotedPaths(); len(quoted) > 0 {
		fmt.Fprintf(&b, "        case \"$cmd $w\" in (%s) cmd=\"$cmd $w\" ;; esac\n", strings.Join(quoted, "|"))
	}
	b.WriteString("    done\n")
	if len(t.valueFlags) > 0 {
		fmt.Fprintf(&b, "    case ${words[CURRENT-1]} in (%s)\n", strings.Join(t.valueFlags, "|"))
		b.WriteString("        _files\n")
		b.WriteString("        return ;;\n")
		b.WriteString("    esac\n")
	}
	b.WriteString("    case \"$cmd\" in\n")
	for _, l := range t.levels {
		items := make([]string, len(l.words))
		for i, w := range l.words {
			items[i] = borg.ShellQuote(strings.ReplaceAll(w.name, ":", `\:`) + ":" + oneLine(w.usage))
		}
		fmt.Fprintf(&b, "    (%s) opts=(%s) ;;\n", borg.ShellQuote(l.path), strings.Join(items, " "))
	}
	b.WriteString("    esac\n")
	fmt.Fprintf(&b, "    _describe -t commands %s opts\n", borg.ShellQuote(prog))
	b.WriteString("}\n")
	// Loaded from fpath (autoload), the file is the function's body; sourced, it registers itself.
	fmt.Fprintf(&b, "if [[ \"${funcstack[1]}\" == %s ]]; then\n    %s \"$@\"\nelse\n    compdef %s %s\nfi\n", borg.ShellQuote("_"+prog), fn, fn, prog)
	return b.String()
}

// oneLine strips the backquotes urfave/cli uses to name a flag's value, and newlines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "`", "")), " ")
}
