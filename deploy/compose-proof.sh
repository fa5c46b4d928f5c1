#!/usr/bin/env bash
# Proof that the compose federation works for real: build the image, bring
# docker-compose.yml up (TLS, node authentication), run the default scenario to a
# completed run, check its results and every node's audit log on this machine, then
# take everything down. Run it before every change to the Dockerfile, the compose
# files or deploy/ (it is not part of CI: see docs/deployment.md).
#
#   deploy/compose-proof.sh            # as root when no Docker engine is running
#
# Any failure, anywhere, ends with one line `compose-proof: FAILED: <step>: <reason>`
# (also repeated after the tear-down, so it is the last thing printed) and a non-zero
# status; success ends with `compose-proof: PASSED`. Sourced (`source
# deploy/compose-proof.sh`), it only defines its helpers: tests call them.
#
# - Docker: the running engine if one answers; otherwise docker.io and docker-compose
#   are installed with apt and dockerd is started (overlay2 storage, else vfs; no
#   iptables, no bridge: host networking only) with its data in $SILOREC_DOCKER_ROOT
#   (default /var/tmp/silorec-docker), and stopped by PID at the end.
# - Base image: $BASE_IMAGE if set; else python:3.11-slim if present or pullable; else
#   local/debian:bookworm, made with debootstrap from the Debian mirror apt uses.
# - Build extras: the CA bundle named by $PIP_CERT and the torch wheel found in
#   $PIP_FIND_LINKS are copied to deploy/build-extras/ and passed as build arguments.
set -Eeuo pipefail

# apt's configuration folder (tests point it at a fixture).
APT_ETC="${APT_ETC:-/etc/apt}"
docker_root="${SILOREC_DOCKER_ROOT:-/var/tmp/silorec-docker}"
# Creating a container copies the whole image with vfs storage: minutes, not seconds.
export COMPOSE_HTTP_TIMEOUT="${COMPOSE_HTTP_TIMEOUT:-900}" DOCKER_CLIENT_TIMEOUT="${DOCKER_CLIENT_TIMEOUT:-900}"
domains=(books toys kitchen)
started=$SECONDS
dockerd_pid=""
current_step="start"
failure=""  # the FAILED line, once one was printed

step() {
    current_step="$*"
    printf '\n== [%4d s] %s\n' $((SECONDS - started)) "$*"
}

# fail REASON: the step that is running failed, for REASON.
fail() {
    failure="compose-proof: FAILED: $current_step: $*"
    echo "$failure" >&2
    exit 1
}

# The ERR trap: a command that failed without a fail() of its own (under set -e).
on_error() {
    local status=$1 line=$2 command=$3
    trap - ERR
    failure="compose-proof: FAILED: $current_step: '$command' exited with status $status (line $line)"
    echo "$failure" >&2
    exit "$status"
}

cleanup() {
    local status=$?
    trap - ERR
    set +e
    printf '\n== [%4d s] %s\n' $((SECONDS - started)) "tear down"
    if docker info >/dev/null 2>&1; then
        docker-compose -p silorec -f docker-compose.yml down -v --remove-orphans
    fi
    if [[ -n "$dockerd_pid" ]]; then
        kill "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
        echo "stopped dockerd (pid $dockerd_pid)"
    fi
    if [[ $status -ne 0 ]]; then
        # The last line says what failed, however the script ended.
        echo "${failure:-compose-proof: FAILED: $current_step: exited with status $status}" >&2
    fi
    exit "$status"
}

need() {  # need COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null && return
    { apt-get update -q && apt-get install -y -q "$2"; } || fail "cannot install $2 with apt-get"
}

start_docker() {
    if docker info >/dev/null 2>&1; then echo "using the running Docker engine"; return; fi
    need dockerd docker.io
    # overlay2 where the file system allows it; vfs (copies every layer in full, slow)
    # where it does not, e.g. inside another container's overlay file system.
    local driver
    for driver in overlay2 vfs; do
        mkdir -p "$docker_root/$driver"
        dockerd --data-root "$docker_root/$driver" --storage-driver "$driver" \
            --iptables=false --bridge=none --pidfile "$docker_root/dockerd.pid" \
            >"$docker_root/dockerd-$driver.log" 2>&1 &
        dockerd_pid=$!
        for _ in $(seq 30); do
            docker info >/dev/null 2>&1 && break
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 1
        done
        if docker info >/dev/null 2>&1; then
            echo "started dockerd (pid $dockerd_pid, $driver storage, data in $docker_root/$driver)"
            return
        fi
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
        dockerd_pid=""
    done
    fail "dockerd did not start; see $docker_root/dockerd-*.log"
}

# The Debian mirror apt uses (not its security archive), from either source format:
# deb822 files (`sources.list.d/*.sources`, `URIs: ...`) or one-line ones
# (`sources.list`, `sources.list.d/*.list`, `deb [options] URI suite ...`); failing
# those, from apt itself (`apt-get indextargets`). Prints it, or fails naming what
# was searched. Missing files are normal: a machine has one format or the other.
debian_mirror() {
    local files=() file mirror=""
    for file in "$APT_ETC"/sources.list.d/*.sources "$APT_ETC"/sources.list \
        "$APT_ETC"/sources.list.d/*.list; do
        [[ -f "$file" ]] && files+=("$file")
    done
    if ((${#files[@]})); then
        mirror=$(awk '
            /^[[:space:]]*#/ { next }
            $1 == "URIs:" { for (i = 2; i <= NF; i++) print $i; next }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if (i <= NF) print $i
            }' "${files[@]}" | grep -v -e security -e '^cdrom:' | head -1 || true)
    fi
    if [[ -z "$mirror" ]] && command -v apt-get >/dev/null; then
        mirror=$(apt-get indextargets --format '$(URI)' 2>/dev/null |
            grep -v security | sed -nE 's#^(.*)/dists/.*#\1#p' | head -1 || true)
    fi
    if [[ -z "$mirror" ]]; then
        echo "no Debian mirror in $APT_ETC/sources.list, $APT_ETC/sources.list.d/*.sources or *.list, nor from apt-get indextargets" >&2
        return 1
    fi
    echo "${mirror%/}"
}

choose_base_image() {
    if [[ -n "${BASE_IMAGE:-}" ]]; then return; fi
    if docker image inspect python:3.11-slim >/dev/null 2>&1 ||
        timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
        BASE_IMAGE=python:3.11-slim
        return
    fi
    BASE_IMAGE=local/debian:bookworm
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
    need debootstrap debootstrap
    local rootfs="$docker_root/rootfs" mirror
    mirror=$(debian_mirror) || fail "cannot find the Debian mirror for debootstrap"
    echo "debootstrap from $mirror"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$docker_root/debootstrap.log" ||
        fail "debootstrap from $mirror failed; see $docker_root/debootstrap.log"
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE"
    rm -rf "$rootfs"
}

build_extras() {
    local extras=deploy/build-extras
    if [[ -n "${PIP_CERT:-}" && -f "$PIP_CERT" ]]; then
        cp "$PIP_CERT" "$extras/ca-bundle.crt"
        export PIP_CA_BUNDLE="$extras/ca-bundle.crt"
    fi
    local wheel
    wheel=$(find "${PIP_FIND_LINKS:-/nonexistent}" -maxdepth 1 -name 'torch-*.whl' 2>/dev/null | head -1 || true)
    if [[ -n "$wheel" ]]; then
        mkdir -p "$extras/wheels"
        ln -f "$wheel" "$extras/wheels/" 2>/dev/null || cp "$wheel" "$extras/wheels/"
        export PIP_WHEELS="$extras/wheels"
    fi
    echo "base image $BASE_IMAGE; pip CA bundle: ${PIP_CA_BUNDLE:-none}; wheels: ${PIP_WHEELS:-none}"
}

check_results() {
    local run_dir=$1
    [[ -f "$run_dir/results.json" ]] || fail "no results in $run_dir"
    python3 - "$run_dir" "${domains[@]}" <<'EOF' || fail "results in $1 are not a completed 3-node run"
import json, sys
from pathlib import Path
run_dir, domains = Path(sys.argv[1]), sys.argv[2:]
results = json.loads((run_dir / "results.json").read_text())
assert results["status"] == "completed", results["status"]
assert results["engine"] == "deployment", results["engine"]
assert sorted(n["domain"] for n in results["nodes"]) == sorted(domains), results["nodes"]
assert not results["failures"], results["failures"]
print(f"results: {run_dir}: completed, {len(results['rows'])} result rows")
EOF
    local audit_logs=()
    for domain in "${domains[@]}"; do
        local log="deploy/local/audit/$domain/node-$domain.jsonl"
        [[ -s "$log" ]] || fail "no audit log $log"
        [[ "$(stat -c %u "$log")" == "$(id -u)" ]] || fail "$log does not belong to $(id -un)"
        audit_logs+=("deploy/local/audit/$domain")
    done
    silorec audit "$run_dir" --node-logs "${audit_logs[@]}" || fail "the audit did not pass"
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    [[ -d .venv/bin ]] && export PATH="$PWD/.venv/bin:$PATH"  # flwr and silorec, host side
    trap cleanup EXIT
    trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
    step "Docker engine"
    start_docker
    need docker-compose docker-compose
    step "base image and build extras"
    choose_base_image
    build_extras
    export BASE_IMAGE
    step "deploy/federation.sh up (image build, credentials, services, key registration)"
    deploy/federation.sh up
    up_done=$SECONDS
    step "deploy/federation.sh run (the default scenario)"
    local run_log run_dir
    run_log=$(mktemp)
    deploy/federation.sh run | tee "$run_log"
    run_dir=$(grep -o 'results: runs/[^;]*' "$run_log" | tail -1 | cut -d' ' -f2 || true)
    rm -f "$run_log"
    [[ -n "$run_dir" ]] || fail "deploy/federation.sh run printed no results directory"
    step "checks on the host"
    check_results "$run_dir"
    echo "timings: up $((up_done - started)) s, run $((SECONDS - up_done)) s (of $((SECONDS - started)) s)"
    echo "compose-proof: PASSED"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
