#!/usr/bin/env bash
# make demo: Tabby's policy core on a realistic app, twice (before and after a
# default-deny + allow-list policy set): the predicted matrix, one explain, and
# the nftables ruleset loaded into a throwaway network namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=e2e/demo
ctl=bin/tabbyctl

if [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null 2>&1; then
  echo "== installing nftables and iproute2"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq nftables iproute2 >/dev/null
fi

banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

banner "1. The app, no policies: everything may talk to everything"
$ctl policy matrix -f $dir/app.yaml -o table
banner "   explain web/frontend -> data/db:5432"
$ctl policy explain -f $dir/app.yaml --from web/frontend --to data/db --port 5432/TCP

banner "2. After default-deny + allow-list ($dir/policies.yaml)"
$ctl policy matrix -f $dir/app.yaml -f $dir/policies.yaml -o table
banner "   explain web/frontend -> data/db:5432 (denied now)"
$ctl policy explain -f $dir/app.yaml -f $dir/policies.yaml --from web/frontend --to data/db --port 5432/TCP
banner "   explain monitoring/scraper -> data/db:9100 (the ClusterNetworkPolicy admits it)"
$ctl policy explain -f $dir/app.yaml -f $dir/policies.yaml --from monitoring/scraper --to data/db --port 9100/TCP

banner "3. The ruleset node-2 programs"
rules=$(mktemp)
trap 'rm -f "$rules"; ip netns del tabby-demo 2>/dev/null || true' EXIT
$ctl policy compile -f $dir/app.yaml -f $dir/policies.yaml --node node-2 > "$rules"
echo "   (excerpt: the base chain, the dispatch maps and the db's ingress policy chain; $(wc -l < "$rules") lines in all)"
sed -n '/^\tmap from-endpoint/,/^\t}/p; /^\tmap to-endpoint/,/^\t}/p; /^\tchain forward/,/^\t}/p; /^\tchain knp\/data\/db-from-api\/ingress/,/^\t}/p' "$rules"
if [ "$(id -u)" = 0 ] && command -v nft >/dev/null && command -v ip >/dev/null; then
  banner "   loaded into a throwaway network namespace with nft -f, read back with nft list"
  ip netns add tabby-demo
  ip netns exec tabby-demo nft -f "$rules"
  ip netns exec tabby-demo nft list chain inet tabby forward
  n_chains=$(ip netns exec tabby-demo nft list chains inet | grep -c '^\s*chain ')
  n_sets=$(ip netns exec tabby-demo nft list sets inet | grep -c '^\s*set ')
  n_rules=$(ip netns exec tabby-demo nft -a list table inet tabby | grep -c '# handle [0-9]*$')
  echo "   the kernel holds Tabby's table: $n_chains chains, $n_sets sets, $n_rules rules"
else
  echo "(run as root with nftables installed to load it into a throwaway network namespace)"
fi
