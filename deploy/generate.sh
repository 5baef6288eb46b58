#!/usr/bin/env bash
# Generates everything in deploy/ that is not written by hand, in three steps
# (default: all three, in this order; name steps as arguments to run some):
#
#   crds      the CRDs of Tabby's kinds (deploy/crds/tabby.dev_*.yaml) and the
#             deepcopy functions (policy/api/v1alpha1/zz_generated.deepcopy.go)
#             from the Go types of policy/api/v1alpha1, with a pinned
#             controller-gen;
#   upstream  the ClusterNetworkPolicy CRD (standard channel) copied from the
#             sigs.k8s.io/network-policy-api module at the version go.mod
#             requires, into deploy/crds/upstream;
#   manifest  deploy/tabby.yaml, the one file users apply: the policy-only
#             overlay rendered by `kubectl kustomize` (kubectl v1.35.4 from
#             `make kube-tools`). It renders the checked-in files, so it runs
#             after the other two.
#
# `make generate` runs it; deploy/crds_test.go and deploy/manifest_test.go run
# it into temporary directories and compare, so a stale checked-in file fails
# the tests.
#
# controller-gen is not a dependency of the main module: it is installed with
# `go install` into a cache directory outside the repository, one directory
# per version, so two checkouts pinning different versions never share a
# binary.
#
# Environment (all optional):
#   CRD_DIR      where the CRDs go                  (default: deploy/crds)
#   OBJECT_DIR   where the deepcopy goes            (default: policy/api/v1alpha1)
#   UPSTREAM_DIR where the upstream CRD goes        (default: deploy/crds/upstream)
#   MANIFEST     the rendered manifest              (default: deploy/tabby.yaml)
#   KUBECTL      the kubectl binary                 (default: the one `make kube-tools` caches)
#   TABBY_CACHE  cache root                         (default: $HOME/.cache/tabby)
#   GO           the go command                     (default: go)
set -euo pipefail

# v0.20.x is the controller-tools line built against k8s.io v0.35 (the
# apiserver Tabby tests against); v0.20.1 builds and runs with Go 1.26.
CONTROLLER_GEN_VERSION=v0.20.1

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
GO="${GO:-go}"
CRD_DIR="${CRD_DIR:-deploy/crds}"
OBJECT_DIR="${OBJECT_DIR:-policy/api/v1alpha1}"
UPSTREAM_DIR="${UPSTREAM_DIR:-deploy/crds/upstream}"
MANIFEST="${MANIFEST:-deploy/tabby.yaml}"
# The kubectl e2e/kube/build.sh builds (its KUBE_VERSION); found where
# e2e/kubetest.BinDir looks: $TABBY_KUBE_BIN, else the versioned cache.
KUBE_VERSION=v1.35.4
KUBECTL="${KUBECTL:-${TABBY_KUBE_BIN:-${TABBY_CACHE:-$HOME/.cache/tabby}/kube/$KUBE_VERSION/bin}/kubectl}"
tools="${TABBY_CACHE:-$HOME/.cache/tabby}/tools/controller-gen-$CONTROLLER_GEN_VERSION"
cg="$tools/controller-gen"

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(crds upstream manifest)
for step in "${steps[@]}"; do
	case "$step" in
	crds | upstream | manifest) ;;
	*)
		echo "generate.sh: unknown step $step (want crds, upstream or manifest)" >&2
		exit 2
		;;
	esac
done

gen_crds() {
	if [ ! -x "$cg" ]; then
		echo "installing controller-gen $CONTROLLER_GEN_VERSION into $tools" >&2
		mkdir -p "$tools"
		# GOFLAGS=-mod=mod: an install outside any module must not inherit a
		# -mod=vendor or -mod=readonly meant for the main module.
		GOBIN="$tools" GOFLAGS=-mod=mod "$GO" install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
	fi
	mkdir -p "$CRD_DIR" "$OBJECT_DIR"
	# crd:allowDangerousTypes=true: Order fields are float64 (type: number).
	# Only the CRD files are replaced: README.md and kustomization.yaml stay.
	rm -f "$CRD_DIR"/tabby.dev_*.yaml
	"$cg" \
		crd:allowDangerousTypes=true \
		object \
		paths=./policy/api/v1alpha1/... \
		output:crd:dir="$CRD_DIR" \
		output:object:dir="$OBJECT_DIR"
}

gen_upstream() {
	# go mod download fetches the module if the cache lacks it (go list -m
	# alone would print an empty Dir); the version is go.mod's.
	"$GO" mod download sigs.k8s.io/network-policy-api
	local dir
	dir="$("$GO" list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)"
	local src="$dir/config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml"
	if [ -z "$dir" ] || [ ! -f "$src" ]; then
		echo "generate.sh: no standard-channel ClusterNetworkPolicy CRD in sigs.k8s.io/network-policy-api ($src)" >&2
		exit 1
	fi
	mkdir -p "$UPSTREAM_DIR"
	# cat, not cp: the module cache is read-only, and the copy must not be.
	cat "$src" >"$UPSTREAM_DIR/$(basename "$src").tmp"
	mv "$UPSTREAM_DIR/$(basename "$src").tmp" "$UPSTREAM_DIR/$(basename "$src")"
}

gen_manifest() {
	if [ ! -x "$KUBECTL" ]; then
		echo "generate.sh: no kubectl at $KUBECTL: run \`make kube-tools\` (or set KUBECTL)" >&2
		exit 1
	fi
	local out
	out="$("$KUBECTL" kustomize deploy/overlays/policy-only)"
	mkdir -p "$(dirname "$MANIFEST")"
	{
		cat <<'HEADER'
# Tabby in policy-only mode: the agent enforces NetworkPolicy, ClusterNetworkPolicy and Tabby's own policies on
# every node next to the cluster's CNI. The CRDs (tabby.dev and the upstream ClusterNetworkPolicy), least-privilege
# RBAC, the settings (ConfigMap tabby-config) and the agent DaemonSet, in namespace tabby-system.
#
#   kubectl apply --server-side -f tabby.yaml
#
# Generated by `make generate` (kubectl kustomize deploy/overlays/policy-only): do not edit; see deploy/README.md.
HEADER
		printf '%s\n' "$out"
	} >"$MANIFEST.tmp"
	mv "$MANIFEST.tmp" "$MANIFEST"
}

for step in "${steps[@]}"; do
	"gen_$step"
done
