#!/usr/bin/env bash
# Credentials of a silorec federation: the TLS CA, the SuperLink's certificate and one
# ECDSA key pair per domain node (SuperNode authentication).
#
#   deploy/make-certs.sh [-o DIR] [-n NAME]... [-d DAYS] [NODE...]
#
#   -o DIR   where to write (default: deploy/local/credentials)
#   -n NAME  another name the SuperLink is reached by, written into its certificate:
#            a DNS name (merge.example.org) or an IP address; repeatable. localhost
#            and 127.0.0.1 are always included.
#   -d DAYS  validity of the SuperLink certificate (default 365; the CA: 10 years)
#   NODE     a node name (the domain it serves): DIR/keys/NODE and DIR/keys/NODE.pub
#
# Writes, keeping whatever already exists (a CA made again would invalidate every
# certificate it signed; a node key made again would need registering again):
#   DIR/ca.crt         the CA certificate: every node and `flwr` CLI user needs it
#   DIR/ca.key         the CA's private key: keep it offline, it signs SuperLink certificates
#   DIR/superlink.crt  the SuperLink's TLS certificate (SAN: localhost, 127.0.0.1, -n names)
#   DIR/superlink.key  its private key: stays on the SuperLink's machine
#   DIR/keys/NODE      a node's private key: stays on that node's machine
#   DIR/keys/NODE.pub  its public key: the SuperLink operator registers it with
#                      `flwr supernode register DIR/keys/NODE.pub <connection>`
# Each file appears complete or not at all (made in a temporary folder, then moved).
# Private keys are readable by their owner only: run Flower's processes (and the
# containers: compose runs them as SILOREC_UID) as the user who made them.
set -euo pipefail

out="deploy/local/credentials"
days=365
names=()
usage() { sed -n '5,12p' "$0" >&2; exit 2; }
while getopts "o:n:d:h" option; do
    case "$option" in
        o) out="$OPTARG" ;;
        n) names+=("$OPTARG") ;;
        d) days="$OPTARG" ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))

for tool in openssl ssh-keygen; do
    command -v "$tool" >/dev/null || { echo "make-certs: '$tool' is needed" >&2; exit 1; }
done
for node in "$@"; do
    [[ "$node" =~ ^[a-z][a-z0-9_-]{0,39}$ ]] || {
        echo "make-certs: node name '$node' is not a domain name ([a-z][a-z0-9_-]*)" >&2
        exit 2
    }
done

mkdir -p "$out/keys"
work=$(mktemp -d "$out/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 077

# Moves a finished file into place (same folder, so the rename is atomic).
publish() { mv -f "$work/$1" "$out/$1"; }

if [[ ! -f "$out/ca.crt" ]]; then
    [[ ! -f "$out/superlink.crt" ]] || {
        echo "make-certs: $out/superlink.crt exists but ca.crt does not: remove it or restore ca.crt" >&2
        exit 1
    }
    openssl ecparam -name secp384r1 -genkey -noout -out "$work/ca.key"
    openssl req -x509 -new -key "$work/ca.key" -sha384 -days 3650 \
        -subj "/CN=silorec federation CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$work/ca.crt"
    chmod 644 "$work/ca.crt"
    publish ca.key
    publish ca.crt
    echo "made $out/ca.crt (and ca.key: keep it offline)"
fi

if [[ ! -f "$out/superlink.crt" ]]; then
    san="DNS:localhost,IP:127.0.0.1"
    for name in "${names[@]}"; do
        if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
    done
    openssl ecparam -name secp384r1 -genkey -noout -out "$work/superlink.key"
    openssl req -new -key "$work/superlink.key" -subj "/CN=silorec superlink" \
        -out "$work/superlink.csr"
    printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
        >"$work/superlink.ext"
    openssl x509 -req -in "$work/superlink.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -CAserial "$work/ca.srl" -days "$days" -sha384 \
        -extfile "$work/superlink.ext" -out "$work/superlink.crt" 2>/dev/null
    chmod 644 "$work/superlink.crt"
    publish superlink.key
    publish superlink.crt
    echo "made $out/superlink.crt for $san"
elif ((${#names[@]})); then
    echo "make-certs: $out/superlink.crt exists; -n names are ignored (remove it to remake it)" >&2
fi

for node in "$@"; do
    [[ ! -f "$out/keys/$node" ]] || continue
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "silorec node $node" -f "$work/$node"
    chmod 644 "$work/$node.pub"
    mv -f "$work/$node.pub" "$out/keys/$node.pub"
    mv -f "$work/$node" "$out/keys/$node"
    echo "made $out/keys/$node (private: stays on the node) and $node.pub (to register)"
done
