# One image for every process of a silorec federation: the SuperLink, the ServerApp
# executor (merge server), SuperNodes and their ClientApp executors (domain nodes).
# Flower 1.41, silorec and CPU torch; runs offline (the text encoder ships inside a
# Python package; Flower never installs dependencies at run time).
#
#   docker build -t silorec .                                   # python:3.11-slim, CPU torch
#   docker build -t silorec --build-arg BASE_IMAGE=local/debian:bookworm \
#       --build-arg PIP_CA_BUNDLE=deploy/build-extras/ca-bundle.crt \
#       --build-arg PIP_WHEELS=deploy/build-extras/wheels .            # offline mirror / TLS proxy
#
# The GPU variant and every build argument are described in docs/deployment.md.

ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# A CA bundle for pip (a TLS-intercepting proxy), as a path inside the build context.
ARG PIP_CA_BUNDLE=
# A folder of wheels inside the build context (pip --find-links), e.g. the local CPU
# torch wheel. When it holds torch, torch is taken from it and nowhere else.
ARG PIP_WHEELS=
# Where torch comes from when PIP_WHEELS has none: the CPU index (a plain PyPI torch
# pulls gigabytes of CUDA libraries). The GPU variant points this at a CUDA index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# Metadata first: on docker's vfs storage every instruction after the big RUN copies
# the whole file system again.
ENV PATH=/opt/silorec/bin:$PATH \
    HOME=/var/lib/silorec/home \
    USER=silorec \
    FLWR_HOME=/var/lib/silorec/flwr \
    SILOREC_CACHE_DIR=/var/lib/silorec/cache \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/silorec/home
CMD ["silorec", "--help"]

# Dependencies first, from pyproject.toml alone, so that a change to silorec's code
# rebuilds only the small layer below. Build extras (a CA bundle, local wheels) go in
# deploy/build-extras/, the only other folder the build sees (see .dockerignore).
COPY pyproject.toml /tmp/silorec-src/
COPY deploy/build-extras/ /tmp/silorec-src/deploy/build-extras/

# python3 when the base lacks it (a bare Debian), a virtualenv, torch pinned as
# pyproject.toml pins it (the local wheel when PIP_WHEELS holds one, else the CPU
# index), then silorec's other dependencies. The CA bundle and wheel folder reach pip
# through its environment (PIP_CERT, PIP_FIND_LINKS), not flags, so that its
# build-isolation subprocess sees them too.
RUN set -eu; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/silorec; \
    src=/tmp/silorec-src; wheels="$src/$PIP_WHEELS"; \
    if [ -n "$PIP_CA_BUNDLE" ]; then export PIP_CERT="$src/$PIP_CA_BUNDLE"; fi; \
    if [ -n "$PIP_WHEELS" ]; then export PIP_FIND_LINKS="$wheels"; fi; \
    pip="pip --no-cache-dir --disable-pip-version-check"; \
    python -c "import tomllib; print('\\n'.join(tomllib.load(open('$src/pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt; \
    torch=$(grep '^torch' /tmp/requirements.txt); \
    if [ -n "$PIP_WHEELS" ] && ls "$wheels"/torch-*.whl >/dev/null 2>&1; then \
        $pip install "$wheels"/torch-*.whl; \
    else \
        $pip install --index-url "$TORCH_INDEX_URL" "$torch"; \
    fi; \
    $pip install -r /tmp/requirements.txt; \
    if [ -n "$PIP_CA_BUNDLE" ]; then cp "$PIP_CERT" /tmp/pip-ca-bundle.pem; fi; \
    rm -rf /tmp/requirements.txt "$src/deploy"

# silorec itself (only its build backend is fetched), a smoke test, the writable places.
COPY README.md /tmp/silorec-src/
COPY platform/ /tmp/silorec-src/platform/
RUN set -eu; \
    if [ -f /tmp/pip-ca-bundle.pem ]; then export PIP_CERT=/tmp/pip-ca-bundle.pem; fi; \
    pip --no-cache-dir --disable-pip-version-check install --no-deps /tmp/silorec-src; \
    python -c "import torch, flwr, silorec.apps.client, silorec.apps.server; print('torch', torch.__version__, '| flwr', flwr.__version__)"; \
    rm -rf /tmp/silorec-src /tmp/pip-ca-bundle.pem; \
    mkdir -p /var/lib/silorec/state /var/lib/silorec/cache /var/lib/silorec/flwr /runs /audit /data; \
    chmod 1777 /var/lib/silorec/state /var/lib/silorec/cache /var/lib/silorec/flwr \
               /var/lib/silorec/home /runs /audit

# Any user id may run the image (compose runs it as the host user, so that files
# written to mounted folders belong to them): every writable place is world-writable.
USER 1000:1000
