package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// API client limits. The agent lists each watched resource once at start
// and after a watch expires, and writes its TabbyNode at most every 2 s;
// client-go's defaults (5 QPS, burst 10) would queue the start's ~10 lists
// and a relist storm behind each other. The rate limiter is per client, so
// the status reporter never waits behind the informers.
const (
	kubeQPS   = 20
	kubeBurst = 50
)

// kubeConfig is the API server connection: the kubeconfig file at path
// (several, separated as in $KUBECONFIG, are merged), else the in-cluster
// service account. Not being in a cluster without a kubeconfig is bad usage
// (exit 2); so is a kubeconfig that does not load.
func kubeConfig(path string) (*rest.Config, error) {
	var cfg *rest.Config
	if path != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
		if strings.ContainsRune(path, filepath.ListSeparator) {
			rules = &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(path)}
		}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, badInput("agent: kubeconfig %s: %v", path, err)
		}
		cfg = c
	} else {
		c, err := rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, badInput("agent: not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset) " +
				"and no kubeconfig: give --kubeconfig (or set KUBECONFIG), or use --datastore manifests --manifests DIR")
		}
		if err != nil {
			return nil, fmt.Errorf("agent: in-cluster API configuration: %w", err)
		}
		cfg = c
	}
	cfg.UserAgent = "tabby-agent/" + buildVersion()
	if cfg.QPS == 0 {
		cfg.QPS = kubeQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = kubeBurst
	}
	return cfg, nil
}
