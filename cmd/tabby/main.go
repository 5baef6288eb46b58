// Command tabby is Tabby's node binary. Today it has one command, the agent:
//
//	tabby agent --node NAME --manifests DIR [flags]
//
// The agent watches a directory of manifests, compiles the policies for this
// node's pods and keeps the node's nftables table "inet tabby" equal to the
// result (see package cmd/tabby/agent for the pipeline). On SIGTERM or
// SIGINT it stops and leaves the kernel table in place: enforcement never
// lapses across a restart.
//
// Exit codes: 0 after a signal, 1 on a runtime failure, 2 on bad usage.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// usageError marks bad input: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func badInput(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

const usage = `usage: tabby <command> [flags]

commands:
  agent --node NAME --manifests DIR [flags]   run the node agent (tabby agent -h lists the flags)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "tabby:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		return badInput("missing command\n%s", usage)
	}
	switch args[0] {
	case "agent":
		return agentCommand(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return badInput("unknown command %q\n%s", args[0], usage)
}
