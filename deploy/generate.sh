#!/usr/bin/env bash
# Generates the CRDs (deploy/crds/*.yaml) and the deepcopy functions
# (policy/api/v1alpha1/zz_generated.deepcopy.go) from the Go types of
# policy/api/v1alpha1 with a pinned controller-gen. `make generate` runs it;
# deploy/crds_test.go runs it into a temporary directory and compares, so a
# stale checked-in file fails the tests.
#
# controller-gen is not a dependency of the main module: it is installed with
# `go install` into a cache directory outside the repository, one directory
# per version, so two checkouts pinning different versions never share a
# binary.
#
# Environment (all optional):
#   CRD_DIR      where the CRDs go         (default: deploy/crds)
#   OBJECT_DIR   where the deepcopy goes   (default: policy/api/v1alpha1)
#   TABBY_CACHE  cache root                (default: $HOME/.cache/tabby)
#   GO           the go command            (default: go)
set -euo pipefail

# v0.20.x is the controller-tools line built against k8s.io v0.35 (the
# apiserver Tabby tests against); v0.20.1 builds and runs with Go 1.26.
CONTROLLER_GEN_VERSION=v0.20.1

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
GO="${GO:-go}"
CRD_DIR="${CRD_DIR:-deploy/crds}"
OBJECT_DIR="${OBJECT_DIR:-policy/api/v1alpha1}"
tools="${TABBY_CACHE:-$HOME/.cache/tabby}/tools/controller-gen-$CONTROLLER_GEN_VERSION"
cg="$tools/controller-gen"

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
