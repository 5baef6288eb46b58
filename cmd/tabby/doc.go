// Command tabby is Tabby's node binary:
//
//	tabby agent [--node NAME] [--datastore kubernetes|manifests] [flags]   the node agent
//	tabby health [--addr HOST:PORT] [--ready]                             probe a running agent
//	tabby version                                                          print the build version
//
// The agent reads policy objects from the Kubernetes API (the default; the
// DaemonSet in deploy/) or from a directory of manifests (--manifests DIR),
// compiles the policies for this node's pods and keeps the node's nftables
// table "inet tabby" equal to the result (see package cmd/tabby/agent for
// the pipeline, and agentCommand for how this command wires it). On SIGTERM
// or SIGINT it stops and leaves the kernel table in place: enforcement never
// lapses across a restart.
//
// health is the DaemonSet's exec probe (there is no curl in the image).
//
// Exit codes: 0 after a signal (agent) or when healthy (health), 1 on a
// runtime failure or an unhealthy agent, 2 on bad usage, including a bad
// TABBY_* environment value.
//
// May import: Tabby's packages it wires (cmd/tabby/agent, cmd/tabby/nodestatus,
// enforcer, policy/store, policy/store/kubestore), k8s.io/client-go for the
// API server connection (rest, clientcmd, dynamic) and k8s.io/klog/v2 (to
// route client-go's logs into the agent's). Nothing imports it.
package main
