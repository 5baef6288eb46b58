// Command etcd is etcd's own server entry point, built in this module so the
// test etcd comes from the same dependency graph (and module proxy) as
// kube-apiserver rather than from a distribution package of another version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
