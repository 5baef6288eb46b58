package main

import (
	"errors"
	"flag"
	"os"
	"strings"
)

// envName is the environment variable of a flag: TABBY_ and the flag's name
// in upper case with - as _ (--log-level: TABBY_LOG_LEVEL). The DaemonSet
// passes the ConfigMap tabby-config with envFrom, so its keys are these.
func envName(flagName string) string {
	return "TABBY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag of fs that the command line did not set from its
// environment variable (see envName); an empty variable counts as unset, as
// a blank ConfigMap entry would be. It returns how each flag that was set
// was given, "--name" or the variable's name, for messages about its value;
// a value that does not parse is an exit-2 error naming the variable.
func applyEnv(fs *flag.FlagSet, cmd string) (givenAs map[string]string, err error) {
	givenAs = map[string]string{}
	fs.Visit(func(f *flag.Flag) { givenAs[f.Name] = "--" + f.Name })
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || givenAs[f.Name] != "" {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = badInput("%s: environment %s=%q: invalid value for --%s: %v", cmd, name, v, f.Name, e)
			return
		}
		givenAs[f.Name] = name
	})
	return givenAs, err
}

// optBool is a boolean flag that knows whether it was given.
type optBool struct {
	set, v bool
}

func (b *optBool) String() string {
	if b == nil || !b.set {
		return ""
	}
	return map[bool]string{true: "true", false: "false"}[b.v]
}

func (b *optBool) Set(s string) error {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		b.v = true
	case "false", "0", "no":
		b.v = false
	default:
		return errBoolSyntax
	}
	b.set = true
	return nil
}

func (b *optBool) IsBoolFlag() bool { return true }

var errBoolSyntax = errors.New("want true or false")
