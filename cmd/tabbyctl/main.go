// Command tabbyctl is Tabby's CLI: policy simulation (matrix, explain,
// compile) and the lab (namespaces, real agents, real packets).
//
// Exit codes: 0 success, 1 runtime failure, 2 bad input (usage, files,
// objects), with a message naming the file, object and field.
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

const usage = `usage: tabbyctl <command> [flags]

commands:
  policy matrix  -f FILE... [-o json|table]        connectivity matrix predicted from the compiled ruleset
  policy explain -f FILE... --from NS/POD --to NS/POD --port N[/PROTO]
                                                   why a connection is allowed or denied
  policy compile -f FILE... [--node NAME]          the nftables ruleset Tabby programs
  lab up -f FILE... --nodes N [--state-dir DIR]    build a lab: node and pod namespaces, servers, tabby agents
  lab apply -f FILE...                             give the running lab's agents new manifests, wait for them
  lab probe [-o json|table] [--timeout 1s]         the connectivity matrix measured with real packets
  lab down [--state-dir DIR]                       tear the lab down
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "tabbyctl:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func dispatch(args []string, stdout io.Writer) error {
	if len(args) < 1 {
		return badInput("missing command\n%s", usage)
	}
	switch args[0] {
	case "policy":
		if len(args) < 2 {
			return badInput("policy: missing subcommand\n%s", usage)
		}
		switch args[1] {
		case "matrix":
			return policyMatrix(args[2:], stdout)
		case "explain":
			return policyExplain(args[2:], stdout)
		case "compile":
			return policyCompile(args[2:], stdout)
		}
		return badInput("policy: unknown subcommand %q\n%s", args[1], usage)
	case "lab":
		return labCommand(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return badInput("unknown command %q\n%s", args[0], usage)
}
