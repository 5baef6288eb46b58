#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries Tabby's Kubernetes-mode tests run against:
# kube-apiserver and kubectl (k8s.io/kubernetes v1.35.4) and etcd (go.etcd.io/etcd/server/v3 v3.6.5),
# all from the Go module proxy through the small module in e2e/kube/apiserver.
#
# Output: ${TABBY_CACHE:-$HOME/.cache/tabby}/kube/<version>/bin/{kube-apiserver,kubectl,etcd}.
# The cache lives outside the repository and is keyed by version, so a machine pays the cold
# build (measured 7.5 min, up to ~20 min on 2 busy cores) once; later runs only verify the
# binaries and exit in well under a second.
#
# Safe to run concurrently: one flock serialises builders of the same version, and binaries are
# built into a temporary directory that is renamed into place only after they pass verification,
# so a reader never sees a half-written bin/ directory.
set -euo pipefail

KUBE_VERSION=v1.35.4
ETCD_VERSION=3.6.5
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/apiserver"
root="${TABBY_CACHE:-$HOME/.cache/tabby}/kube/$KUBE_VERSION"
bin="$root/bin"

# The module proxy only: a fallback to "direct" would fetch from VCS hosts CI may not reach, and
# would make builds depend on more than the checksummed zips go.sum names.
export GOPROXY="${TABBY_GOPROXY:-https://proxy.golang.org}"
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0 # static binaries, as the upstream release build makes them

# verify DIR: every binary exists and reports the pinned version. Outputs are captured before
# matching: `cmd | grep -q` under pipefail fails at random when grep exits before cmd has written
# its last line (SIGPIPE).
verify() {
	local d="$1" out
	[ -x "$d/kube-apiserver" ] && [ -x "$d/kubectl" ] && [ -x "$d/etcd" ] || return 1
	out="$("$d/kube-apiserver" --version 2>/dev/null)" || return 1
	[[ $'\n'"$out"$'\n' == *$'\n'"Kubernetes $KUBE_VERSION"$'\n'* ]] || return 1
	out="$("$d/kubectl" version --client 2>/dev/null)" || return 1
	[[ $'\n'"$out"$'\n' == *$'\n'"Client Version: $KUBE_VERSION"$'\n'* ]] || return 1
	out="$("$d/etcd" --version 2>/dev/null)" || return 1
	[[ $'\n'"$out"$'\n' == *$'\n'"etcd Version: $ETCD_VERSION"$'\n'* ]] || return 1
}

if verify "$bin"; then
	echo "kube-tools: $KUBE_VERSION binaries present in $bin"
	exit 0
fi

mkdir -p "$root"
exec 9>"$root/.lock"
if command -v flock >/dev/null 2>&1; then
	echo "kube-tools: waiting for the build lock $root/.lock"
	flock 9
	# Another builder may have finished while this one waited.
	if verify "$bin"; then
		echo "kube-tools: $KUBE_VERSION binaries present in $bin (built by a concurrent run)"
		exit 0
	fi
fi

command -v go >/dev/null 2>&1 || { echo "kube-tools: go is not on PATH" >&2; exit 1; }
start=$(date +%s)
tmp="$(mktemp -d "$root/.bin.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp" # mktemp makes it 0700; it becomes bin/

echo "kube-tools: building kube-apiserver, kubectl $KUBE_VERSION and etcd $ETCD_VERSION into $bin"
echo "kube-tools: a cold build downloads ~500 modules and compiles for ~8-20 min on 2 cores"

cd "$module"
dl_start=$(date +%s)
go mod download
echo "kube-tools: module download took $(( $(date +%s) - dl_start ))s"

minor="${KUBE_VERSION#v1.}"
minor="${minor%%.*}"
vpkg=k8s.io/component-base/version
ldflags="-s -w"
ldflags+=" -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

build_start=$(date +%s)
go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" ./etcd
echo "kube-tools: compile took $(( $(date +%s) - build_start ))s"

if ! verify "$tmp"; then
	echo "kube-tools: the fresh binaries do not report the expected versions:" >&2
	"$tmp/kube-apiserver" --version >&2 || true
	"$tmp/kubectl" version --client >&2 || true
	"$tmp/etcd" --version >&2 || true
	exit 1
fi

# rename(2) cannot replace a non-empty directory: move a stale bin/ aside first. Both steps are
# renames within $root, so bin/ is either absent, the old tree, or the complete new tree.
if [ -e "$bin" ]; then
	old="$(mktemp -d "$root/.old.XXXXXX")"
	mv "$bin" "$old/"
	rm -rf "$old"
fi
mv -T "$tmp" "$bin"
trap - EXIT
echo "kube-tools: built $KUBE_VERSION into $bin in $(( $(date +%s) - start ))s"
