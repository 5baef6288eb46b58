//go:build tools

// Package tools pins the main packages build.sh compiles, so that `go mod tidy`
// in this module records every dependency they need in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
