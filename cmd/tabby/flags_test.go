package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// clearAgentEnv unsets, for the test, every variable the agent reads, so the
// machine's environment cannot change an outcome.
func clearAgentEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "TABBY_") || name == "NODE_NAME" || name == "KUBECONFIG" ||
			name == "KUBERNETES_SERVICE_HOST" || name == "KUBERNETES_SERVICE_PORT" {
			t.Setenv(name, "") // restores the value after the test
			os.Unsetenv(name)
		}
	}
}

// writeKubeconfig writes a kubeconfig for server with a bearer token.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	content := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + server + `", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: secret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgentFlags(t *testing.T) {
	dir := t.TempDir()
	type want struct {
		node, datastore, kubeconfig, manifests, logLevel, healthAddr, ifaces string
		nodeStatus                                                           bool
		debounce                                                             time.Duration
	}
	kube := want{node: "n1", datastore: "kubernetes", nodeStatus: true, logLevel: "info", healthAddr: "127.0.0.1:9099",
		ifaces: "route", debounce: 2 * time.Millisecond}
	with := func(f func(*want)) want { w := kube; f(&w); return w }
	manifests := with(func(w *want) { w.datastore, w.manifests, w.nodeStatus = "manifests", dir, false })
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want want
		err  string // substring of the exit-2 error; "" for success
	}{
		{name: "kubernetes by default", args: []string{"--node", "n1"}, want: kube},
		{name: "manifests when --manifests", args: []string{"--node", "n1", "--manifests", dir}, want: manifests},
		{name: "node from NODE_NAME", env: map[string]string{"NODE_NAME": "n1"}, want: kube},
		{name: "TABBY_NODE over NODE_NAME", env: map[string]string{"NODE_NAME": "n2", "TABBY_NODE": "n1"}, want: kube},
		{name: "--node over both", args: []string{"--node", "n1"}, env: map[string]string{"NODE_NAME": "n2", "TABBY_NODE": "n3"}, want: kube},
		{name: "KUBECONFIG", args: []string{"--node", "n1"}, env: map[string]string{"KUBECONFIG": "/k"},
			want: with(func(w *want) { w.kubeconfig = "/k" })},
		{name: "TABBY_KUBECONFIG over KUBECONFIG", args: []string{"--node", "n1"}, env: map[string]string{"KUBECONFIG": "/k", "TABBY_KUBECONFIG": "/t"},
			want: with(func(w *want) { w.kubeconfig = "/t" })},
		{name: "--kubeconfig over both", args: []string{"--node", "n1", "--kubeconfig", "/c"}, env: map[string]string{"KUBECONFIG": "/k", "TABBY_KUBECONFIG": "/t"},
			want: with(func(w *want) { w.kubeconfig = "/c" })},
		{name: "env sets flags", args: []string{"--node", "n1"},
			env: map[string]string{"TABBY_LOG_LEVEL": "debug", "TABBY_DEBOUNCE": "5ms", "TABBY_HEALTH_ADDR": "127.0.0.1:1", "TABBY_INTERFACE_DISCOVERY": "none"},
			want: with(func(w *want) {
				w.logLevel, w.debounce, w.healthAddr, w.ifaces = "debug", 5*time.Millisecond, "127.0.0.1:1", "none"
			})},
		{name: "command line wins", args: []string{"--node", "n1", "--log-level", "warn", "--debounce=7ms"},
			env:  map[string]string{"TABBY_LOG_LEVEL": "debug", "TABBY_DEBOUNCE": "5ms"},
			want: with(func(w *want) { w.logLevel, w.debounce = "warn", 7*time.Millisecond })},
		{name: "a bad env value on a flag given on the command line is not read", args: []string{"--node", "n1", "--debounce=7ms"},
			env: map[string]string{"TABBY_DEBOUNCE": "soon"}, want: with(func(w *want) { w.debounce = 7 * time.Millisecond })},
		{name: "empty env is unset", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_DEBOUNCE": "", "TABBY_DATASTORE": ""}, want: kube},
		{name: "node status off", args: []string{"--node", "n1", "--node-status=false"}, want: with(func(w *want) { w.nodeStatus = false })},
		{name: "node status off by env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_NODE_STATUS": "false"},
			want: with(func(w *want) { w.nodeStatus = false })},
		{name: "node status on explicitly", args: []string{"--node", "n1", "--node-status"}, want: kube},
		{name: "manifests by env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_DATASTORE": "manifests", "TABBY_MANIFESTS": dir}, want: manifests},
		{name: "manifests, node status off", args: []string{"--node", "n1", "--manifests", dir, "--node-status=false"}, want: manifests},
		{name: "manifests ignore KUBECONFIG", args: []string{"--node", "n1", "--manifests", dir}, env: map[string]string{"KUBECONFIG": "/k"},
			want: with(func(w *want) { w.datastore, w.manifests, w.nodeStatus, w.kubeconfig = "manifests", dir, false, "/k" })},

		{name: "bad duration in env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_DEBOUNCE": "soon"},
			err: `environment TABBY_DEBOUNCE="soon": invalid value for --debounce`},
		{name: "bad bool in env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_NODE_STATUS": "maybe"},
			err: `environment TABBY_NODE_STATUS="maybe"`},
		{name: "bad choice in env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_INTERFACE_DISCOVERY": "arp"},
			err: `TABBY_INTERFACE_DISCOVERY "arp": want route or none`},
		{name: "bad log level in env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_LOG_LEVEL": "loud"},
			err: `TABBY_LOG_LEVEL "loud"`},
		{name: "bad datastore in env", args: []string{"--node", "n1"}, env: map[string]string{"TABBY_DATASTORE": "etcd"},
			err: `TABBY_DATASTORE "etcd": want kubernetes or manifests`},
		{name: "bad datastore", args: []string{"--node", "n1", "--datastore", "etcd"}, err: `--datastore "etcd"`},
		{name: "no node", args: []string{"--manifests", dir}, err: "--node is required"},
		{name: "manifests without a directory", args: []string{"--node", "n1", "--datastore", "manifests"}, err: "--manifests is required"},
		{name: "kubernetes with --manifests", args: []string{"--node", "n1", "--datastore", "kubernetes", "--manifests", dir},
			err: "--manifests is only read with the manifests datastore"},
		{name: "kubernetes by env with --manifests", args: []string{"--node", "n1", "--manifests", dir}, env: map[string]string{"TABBY_DATASTORE": "kubernetes"},
			err: "--manifests is only read with the manifests datastore, TABBY_DATASTORE is kubernetes"},
		{name: "node status with manifests", args: []string{"--node", "n1", "--manifests", dir, "--node-status"},
			err: "--node-status needs the kubernetes datastore"},
		{name: "node status by env with manifests", args: []string{"--node", "n1", "--manifests", dir}, env: map[string]string{"TABBY_NODE_STATUS": "true"},
			err: "TABBY_NODE_STATUS needs the kubernetes datastore"},
		{name: "kubeconfig with manifests", args: []string{"--node", "n1", "--manifests", dir, "--kubeconfig", "/k"},
			err: "--kubeconfig is only read with the kubernetes datastore"},
		{name: "extra argument", args: []string{"--node", "n1", "x"}, err: `unexpected argument "x"`},
		{name: "unknown flag", args: []string{"--node", "n1", "--nope"}, err: "flag provided but not defined: -nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearAgentEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f, err := parseAgentFlags(tc.args, io.Discard)
			if tc.err != "" {
				if err == nil || !isUsageError(err) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want a usage error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{node: f.node, datastore: f.datastore, kubeconfig: f.kubeconfig, manifests: f.manifests, logLevel: f.logLevel,
				healthAddr: f.healthAddr, ifaces: f.ifaces, nodeStatus: f.nodeStatus, debounce: f.debounce}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestConfigMapKeys: every key of deploy/'s ConfigMap is the environment
// form of an agent flag, and the ConfigMap as the DaemonSet passes it
// (envFrom, plus NODE_NAME) parses.
func TestConfigMapKeys(t *testing.T) {
	clearAgentEnv(t)
	data, err := os.ReadFile("../../deploy/base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil || cm.Kind != "ConfigMap" || len(cm.Data) == 0 {
		t.Fatalf("deploy/base/config.yaml: %v (%+v)", err, cm)
	}
	var names []string
	var help bytes.Buffer
	_, _ = parseAgentFlags([]string{"-h"}, &help)
	for _, line := range strings.Split(help.String(), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
			names = append(names, envName(strings.Fields(rest)[0]))
		}
	}
	if len(names) < 15 {
		t.Fatalf("found %d flags in the help text:\n%s", len(names), help.String())
	}
	for key, v := range cm.Data {
		if !slices.Contains(names, key) {
			t.Errorf("ConfigMap key %s is no agent flag's variable (%v)", key, names)
		}
		t.Setenv(key, v)
	}
	t.Setenv("NODE_NAME", "node-1")
	f, err := parseAgentFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("the ConfigMap's settings: %v", err)
	}
	if f.datastore != "kubernetes" || !f.nodeStatus || f.node != "node-1" {
		t.Fatalf("the ConfigMap's settings give %+v", f)
	}
}

func TestAgentHelp(t *testing.T) {
	clearAgentEnv(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"agent", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"TABBY_<FLAG>", "TABBY_LOG_LEVEL", "$NODE_NAME", "-datastore", "-kubeconfig", "$KUBECONFIG", "-node-status",
		"-manifests", "-health-addr", "kubectl get tabbynodes"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestKubeConfig(t *testing.T) {
	clearAgentEnv(t)
	path := writeKubeconfig(t, "https://10.1.2.3:6443")
	cfg, err := kubeConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://10.1.2.3:6443" || cfg.BearerToken != "secret" || cfg.QPS != kubeQPS || cfg.Burst != kubeBurst ||
		cfg.UserAgent != "tabby-agent/"+buildVersion() {
		t.Fatalf("config %+v", cfg)
	}
	// A $KUBECONFIG-style list: the first file that sets a value wins.
	other := writeKubeconfig(t, "https://10.9.9.9:6443")
	if cfg, err = kubeConfig(path + string(filepath.ListSeparator) + other); err != nil || cfg.Host != "https://10.1.2.3:6443" {
		t.Fatalf("list: %v, %+v", err, cfg)
	}
	// In a cluster (the service account files are absent here): not a
	// usage error, a runtime one naming the problem.
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	if _, err := kubeConfig(""); err == nil || isUsageError(err) || !strings.Contains(err.Error(), "in-cluster") {
		t.Fatalf("in-cluster without a token: %v", err)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &stdout, &stderr); code != 0 || strings.TrimSpace(stdout.String()) != buildVersion() {
		t.Fatalf("exit %d, %q", code, stdout.String())
	}
	old := version
	defer func() { version = old }()
	version = "v9.8.7"
	if buildVersion() != "v9.8.7" {
		t.Fatal("the link-time version is not used")
	}
}
