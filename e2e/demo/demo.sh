#!/usr/bin/env bash
# make demo: Tabby's main job for real. A realistic app (frontend, api, db,
# monitoring across namespaces) runs in a 2-node lab of network namespaces
# with one `tabby agent` per node. It is shown twice — before, and after a
# default-deny + allow-list policy set: each time the predicted matrix (the
# compiled ruleset, traced), the measured matrix (real TCP packets) and an
# explain. Then the lab is torn down.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=e2e/demo
ctl=$PWD/bin/tabbyctl

if [ "$(id -u)" != 0 ]; then
  echo "make demo needs root: it builds network namespaces and programs nftables in them" >&2
  exit 2
fi
missing=()
for t in nft:nftables ip:iproute2 iperf3:iperf3; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
trap '$ctl lab down >/dev/null 2>&1 || true' EXIT

show() { # show FILES...: predicted, measured, and whether they agree
  local args=() f
  for f in "$@"; do args+=(-f "$f"); done
  banner "   predicted (tabbyctl policy matrix: the compiled ruleset, traced)"
  $ctl policy matrix "${args[@]}" -o table
  banner "   measured (tabbyctl lab probe: real packets between the pods' namespaces)"
  $ctl lab probe -o table
  $ctl policy matrix "${args[@]}" -o json > /tmp/tabby-demo-predicted.json
  $ctl lab probe -o json > /tmp/tabby-demo-measured.json
  if diff -u /tmp/tabby-demo-predicted.json /tmp/tabby-demo-measured.json; then
    echo "   ✓ measured == predicted ($(wc -l < /tmp/tabby-demo-measured.json) probes)"
  else
    echo "   ✗ measured and predicted differ (diff above)"; exit 1
  fi
}

banner "1. The app in a 2-node lab, no policies: everything may talk to everything"
$ctl lab up -f $dir/app.yaml --nodes 2
show $dir/app.yaml
banner "   explain web/frontend -> data/db:5432"
$ctl policy explain -f $dir/app.yaml --from web/frontend --to data/db --port 5432/TCP

banner "2. Apply default-deny + allow-list ($dir/policies.yaml) to the running agents"
$ctl lab apply -f $dir/app.yaml -f $dir/policies.yaml
show $dir/app.yaml $dir/policies.yaml
banner "   explain web/frontend -> data/db:5432 (denied now)"
$ctl policy explain -f $dir/app.yaml -f $dir/policies.yaml --from web/frontend --to data/db --port 5432/TCP
banner "   explain monitoring/scraper -> data/db:9100 (the ClusterNetworkPolicy admits it)"
$ctl policy explain -f $dir/app.yaml -f $dir/policies.yaml --from monitoring/scraper --to data/db --port 9100/TCP

banner "3. What the agent on node-2 programmed in its kernel (excerpt)"
ip netns exec tabby-lab-node-2 nft list chain inet tabby forward
ip netns exec tabby-lab-node-2 nft list chain inet tabby knp/data/db-from-api/ingress
n_chains=$(ip netns exec tabby-lab-node-2 nft list chains inet | grep -c '^\s*chain ')
n_rules=$(ip netns exec tabby-lab-node-2 nft -a list table inet tabby | grep -c '# handle [0-9]*$')
echo "   node-2's table: $n_chains chains, $n_rules rules"

banner "4. Tear down"
$ctl lab down
trap - EXIT
echo "   lab removed"
