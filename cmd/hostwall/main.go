// Command hostwall compiles TOML firewall policies into one nftables table,
// applies it atomically, and checks, tests and exports it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kong"
	"github.com/hostwall/hostwall/model"
)

// Exit codes (design.md).
const (
	exitOK     = 0 // success
	exitPolicy = 1 // the policy is wrong: compile/lint errors, failed tests
	exitUsage  = 2 // usage errors
	exitSystem = 3 // the kernel refused or the system failed
)

// CLI is hostwall's command line; each command is a struct with Run.
type CLI struct {
	Compile  CompileCmd  `cmd:"" help:"Print the compiled ruleset (dry run)."`
	Apply    ApplyCmd    `cmd:"" help:"Compile and replace hostwall's table in one netlink transaction."`
	Flush    FlushCmd    `cmd:"" help:"Delete hostwall's table (and nothing else)."`
	Status   StatusCmd   `cmd:"" help:"Show the loaded table with per-rule counters."`
	Test     TestCmd     `cmd:"" help:"Run the policy's [[test]]s against the compiled ruleset."`
	Explain  ExplainCmd  `cmd:"" help:"Show which rule decides a packet, and where it was written."`
	Export   ExportCmd   `cmd:"" help:"Write the policy as iptables-restore files (rules.v4, rules.v6)."`
	Lint     LintCmd     `cmd:"" help:"Check policies for errors and likely mistakes (for CI)."`
	Diff     DiffCmd     `cmd:"" help:"Show what apply would change in the kernel (exit 1 on drift)."`
	Confirm  ConfirmCmd  `cmd:"" help:"Keep the table of a pending 'apply --confirm'."`
	Rollback RollbackCmd `cmd:"" help:"Undo a pending 'apply --confirm' now, or re-apply the last known good table."`

	RollbackTimer RollbackTimerCmd `cmd:"" hidden:"" help:"The detached helper of 'apply --confirm' (internal)."`
}

// Env is what commands write to; bound into kong so tests can capture it.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
}

// policyError marks an error as "the policy is wrong" (exit 1).
type policyError struct{ err error }

func (e *policyError) Error() string { return e.err.Error() }
func (e *policyError) Unwrap() error { return e.err }

// systemError marks an error as "the kernel or system failed" (exit 3).
type systemError struct{ err error }

func (e *systemError) Error() string { return e.err.Error() }
func (e *systemError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], Env{Stdout: os.Stdout, Stderr: os.Stderr}))
}

// run parses args, runs the command and returns the exit code.
func run(args []string, env Env) int {
	var cli CLI
	exitCode := -1
	parser, err := kong.New(&cli,
		kong.Name("hostwall"),
		kong.Description("An nftables-native host firewall compiler."),
		kong.UsageOnError(),
		kong.Writers(env.Stdout, env.Stderr),
		kong.Exit(func(code int) { exitCode = code }),
		kong.Bind(&env),
	)
	if err != nil {
		fmt.Fprintln(env.Stderr, "hostwall:", err)
		return exitUsage
	}
	ctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help and friends
		return exitCode
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, "hostwall:", err)
		return exitUsage
	}
	if err := ctx.Run(); err != nil {
		return report(env.Stderr, err)
	}
	return exitOK
}

// report prints err and maps it to an exit code.
func report(w io.Writer, err error) int {
	if diags, ok := model.AsDiags(err); ok {
		for _, d := range diags {
			if d.Pos == (model.Pos{}) {
				fmt.Fprint(w, "hostwall: ")
			}
			fmt.Fprintln(w, d.String())
		}
		return exitPolicy
	}
	fmt.Fprintln(w, "hostwall:", err)
	var pe *policyError
	var se *systemError
	switch {
	case errors.As(err, &pe):
		return exitPolicy
	case errors.As(err, &se):
		return exitSystem
	}
	return exitUsage
}
