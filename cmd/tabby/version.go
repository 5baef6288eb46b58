package main

import "runtime/debug"

// version is the release version, set at link time:
//
//	go build -ldflags "-X main.version=v0.4.0" ./cmd/tabby
var version string

// buildVersion is the agent's version as TabbyNode.status.agentVersion and the
// API client's User-Agent show it: the link-time version, else the module
// version the go command stamped (a tag, or a pseudo-version from the VCS),
// else "devel" with the VCS revision.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	v := "devel+" + rev[:min(len(rev), 12)]
	if dirty {
		v += ".dirty"
	}
	return v
}
