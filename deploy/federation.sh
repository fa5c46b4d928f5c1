#!/usr/bin/env bash
# The local compose federation of docker-compose.yml, from this repository's root:
#
#   deploy/federation.sh up              credentials (first time only), host folders,
#                                        the image, every service; waits until the
#                                        three nodes are online
#   deploy/federation.sh run [SCENARIO]  a scenario (default: the built-in quickstart)
#                                        with `flwr run .`; fails unless the run completed
#   deploy/federation.sh down            stops and removes the containers (the volumes,
#                                        SuperLink state and node caches, are kept)
#
# Results land in runs/<scenario>-<time>/ and each node's audit log in
# deploy/local/audit/<domain>/, both on this machine. SCENARIO is a path inside this
# project (it travels in the app bundle), e.g. scenarios/quickstart.toml.
# Environment: SILOREC_UID and SILOREC_GID (the containers' user, default: yours),
# BASE_IMAGE, PIP_CA_BUNDLE, PIP_WHEELS (image build arguments, docs/deployment.md).
# Needs docker-compose and, for `run`, silorec installed here (the `flwr` CLI).
set -euo pipefail
cd "$(dirname "$0")/.."

state=deploy/local
domains=(books toys kitchen)
connection=silorec-compose
export SILOREC_UID="${SILOREC_UID:-$(id -u)}" SILOREC_GID="${SILOREC_GID:-$(id -g)}"
export FLWR_HOME="$PWD/$state/flwr-home"
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

compose() { docker-compose -p silorec -f docker-compose.yml "$@"; }

# The `flwr` CLI connection to the compose SuperLink, over TLS.
write_connection() {
    mkdir -p "$FLWR_HOME"
    printf '[superlink]\ndefault = "%s"\n\n[superlink.%s]\naddress = "127.0.0.1:9092"\nroot-certificates = "%s"\n' \
        "$connection" "$connection" "$PWD/$state/credentials/ca.crt" >"$FLWR_HOME/config.toml"
}

json_field() { python3 -c "import json, sys; print($1)"; }

online_nodes() {
    flwr supernode ls "$connection" --format json 2>/dev/null |
        json_field 'sum(n["status"] == "online" for n in json.load(sys.stdin).get("nodes", []))' ||
        echo 0
}

up() {
    deploy/make-certs.sh -o "$state/credentials" "${domains[@]}"
    # Made here, as the containers' user; docker would make missing ones as root.
    for domain in "${domains[@]}"; do mkdir -p "$state/data/$domain" "$state/audit/$domain"; done
    mkdir -p runs
    compose up -d --build
    write_connection
    local deadline=$((SECONDS + ${SILOREC_UP_TIMEOUT:-180}))
    until [[ "$(online_nodes)" == "${#domains[@]}" ]]; do
        if ((SECONDS > deadline)); then
            echo "federation: the nodes did not come online; see: docker-compose -p silorec logs" >&2
            exit 1
        fi
        sleep 3
    done
    echo "federation up: ${#domains[@]} nodes online at 127.0.0.1:9092"
}

run() {
    local scenario="${1:-}" name log run_id status
    write_connection
    name="$(basename "${scenario:-quickstart}" .toml)-$(date +%Y%m%d-%H%M%S)"
    log="$state/logs/$name.log"
    mkdir -p "$state/logs"
    flwr run . "$connection" --stream \
        --run-config "scenario=\"$scenario\" run-dir=\"/runs/$name\" engine=\"deployment\"" |
        tee "$log"
    run_id=$(grep -o 'Successfully started run [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [[ -n "$run_id" ]] || { echo "federation: flwr run started no run (see $log)" >&2; exit 1; }
    # `flwr run` exits 0 even when the run failed, and its log stream may end before
    # the run does: ask the SuperLink until the run has finished.
    local deadline=$((SECONDS + ${SILOREC_RUN_TIMEOUT:-7200}))
    until status=$(flwr ls "$connection" --run-id "$run_id" --format json |
        json_field 'json.load(sys.stdin)["runs"][0]["status"]') && [[ "$status" == finished:* ]]; do
        ((SECONDS < deadline)) || { echo "federation: run $run_id still $status" >&2; exit 1; }
        sleep 5
    done
    echo "run $run_id: $status; results: runs/$name; audit logs: $state/audit/"
    [[ "$status" == "finished:completed" ]]
}

case "${1:-}" in
    up) up ;;
    run) shift; run "$@" ;;
    down) compose down ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
