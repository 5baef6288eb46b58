package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError marks bad input: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func badInput(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// isUsageError reports whether err is bad input (exit code 2).
func isUsageError(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

const usage = `usage: tabby <command> [flags]

commands:
  agent [--node NAME] [flags]         run the node agent (tabby agent -h lists the flags)
  health [--addr HOST:PORT] [--ready] exit 0 iff the agent's /healthz (/readyz) answers 200
  version                             print the build version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command until it ends or ctx does (a signal) and returns the
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "tabby:", err)
	if isUsageError(err) {
		return 2
	}
	return 1
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		return badInput("missing command\n%s", usage)
	}
	switch args[0] {
	case "agent":
		return agentCommand(ctx, args[1:], stdout, stderr)
	case "health":
		return healthCommand(ctx, args[1:], stdout)
	case "version":
		if len(args) > 1 {
			return badInput("version: unexpected argument %q", args[1])
		}
		fmt.Fprintln(stdout, buildVersion())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return badInput("unknown command %q\n%s", args[0], usage)
}
