#!/bin/sh
# Registers domain nodes' public keys with a running SuperLink (SuperNode
# authentication: a node whose key is not registered is refused).
#
#   register-nodes.sh SUPERLINK_ADDRESS CA_CERTIFICATE PUBLIC_KEY...
#
# A key that is already registered is left as it is, so this can run at every start
# (docker-compose.yml runs it in its register-nodes service). The operator does the
# same by hand for a new domain: `flwr supernode register keys/NODE.pub CONNECTION`.
set -eu
[ $# -ge 3 ] || { sed -n '5p' "$0" >&2; exit 2; }
address=$1
ca=$2
shift 2

FLWR_HOME=$(mktemp -d)
export FLWR_HOME
trap 'rm -rf "$FLWR_HOME"' EXIT
printf '[superlink]\ndefault = "federation"\n\n[superlink.federation]\naddress = "%s"\nroot-certificates = "%s"\n' \
    "$address" "$ca" >"$FLWR_HOME/config.toml"

for key in "$@"; do
    answer=$(flwr supernode register "$key" federation --format json 2>&1) || true
    case "$answer" in
        *'"success": true'*) echo "registered $key" ;;
        *"already in use"*) echo "already registered: $key" ;;
        *) echo "register-nodes: could not register $key: $answer" >&2; exit 1 ;;
    esac
done
