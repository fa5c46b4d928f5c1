"""The compose files, the Dockerfile and the deployment scripts match the one
description of a federation's processes (``silorec.deploy.topology``) that the
loopback test starts: the same commands and flags, each node seeing only its own
data, key and audit folder. Nothing is started here."""

from __future__ import annotations

import io
import os
import re
import shlex
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from silorec.deploy.topology import (
    COMPOSE_TOPOLOGY,
    CONTAINER_LAYOUT,
    NodeEndpoint,
    clientapp_executor_command,
    serverapp_executor_command,
    superlink_command,
    supernode_command,
)
from silorec.engine.flwr_cli import OFFLINE_FLOWER_ENV
from silorec.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
HOST_STATE = "./deploy/local"
NODE_SERVICES = {"supernode", "executor"}


def load_compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def without_defaults(text: str) -> str:
    """``${NAME:?message}`` and ``${NAME:-default}`` -> ``${NAME}``: what a variable
    stands for, without its error message or default."""
    return re.sub(r"\$\{(\w+):[?-][^}]*\}", r"${\1}", text)


def command_of(service: dict[str, Any]) -> list[str]:
    """A service's command as docker-compose splits it."""
    command = service["command"]
    return shlex.split(without_defaults(command)) if isinstance(command, str) else command


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Container path -> (host source or volume, mode) of a service's volumes."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *mode = without_defaults(volume).split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_compose("docker-compose.yml")["services"]


def test_compose_federation_serves_the_default_scenario_domains() -> None:
    domains = [d.name for d in load_scenario("builtin:quickstart").domains]
    assert [n.domain for n in COMPOSE_TOPOLOGY.nodes] == domains
    ports = [COMPOSE_TOPOLOGY.superlink_port] + [n.runtime_port for n in COMPOSE_TOPOLOGY.nodes]
    assert len(set(ports)) == len(ports)


def test_compose_has_one_service_per_process_of_the_topology(services: dict[str, Any]) -> None:
    expected = {"superlink", "register-nodes", "serverapp-executor"} | {
        f"{node.domain}-{role}" for node in COMPOSE_TOPOLOGY.nodes for role in NODE_SERVICES
    }
    assert set(services) == expected
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert service["image"] == "silorec:latest", name
        assert service["user"] == "${SILOREC_UID:-1000}:${SILOREC_GID:-1000}", name


def test_compose_commands_are_the_topology_commands(services: dict[str, Any]) -> None:
    topology, layout = COMPOSE_TOPOLOGY, CONTAINER_LAYOUT
    assert command_of(services["superlink"]) == superlink_command(topology, layout)
    assert command_of(services["serverapp-executor"]) == serverapp_executor_command(
        topology, layout
    )
    for node in topology.nodes:
        assert command_of(services[f"{node.domain}-supernode"]) == supernode_command(
            node, layout, topology.superlink_address
        )
        assert command_of(services[f"{node.domain}-executor"]) == clientapp_executor_command(node)


def test_superlink_keeps_its_state_in_a_volume_and_its_key_read_only(
    services: dict[str, Any],
) -> None:
    superlink = mounts(services["superlink"])
    state_dir = str(Path(CONTAINER_LAYOUT.database).parent)
    assert superlink[state_dir] == ("superlink-state", "rw")
    credentials = f"{HOST_STATE}/credentials"
    assert superlink[CONTAINER_LAYOUT.superlink_key] == (f"{credentials}/superlink.key", "ro")
    assert superlink[CONTAINER_LAYOUT.superlink_certificate][1] == "ro"
    assert superlink[CONTAINER_LAYOUT.ca_certificate] == (f"{credentials}/ca.crt", "ro")


def test_each_node_sees_only_its_own_key_data_audit_folder_and_cache(
    services: dict[str, Any],
) -> None:
    layout = CONTAINER_LAYOUT
    for node in COMPOSE_TOPOLOGY.nodes:
        domain = node.domain
        assert mounts(services[f"{domain}-supernode"]) == {
            layout.ca_certificate: (f"{HOST_STATE}/credentials/ca.crt", "ro"),
            layout.node_key: (f"{HOST_STATE}/credentials/keys/{domain}", "ro"),
        }
        assert mounts(services[f"{domain}-executor"]) == {
            layout.node_data: (f"{HOST_STATE}/data/{domain}", "ro"),
            layout.node_audit: (f"{HOST_STATE}/audit/{domain}", "rw"),
            layout.node_cache: (f"{domain}-cache", "rw"),
        }
    # Nothing else in the federation mounts a domain's data or audit folder.
    for name, service in services.items():
        if name.endswith("-executor") and name != "serverapp-executor":
            continue
        sources = [source for source, _ in mounts(service).values()]
        assert not [s for s in sources if "/data/" in s or "/audit/" in s], name


def test_every_node_key_is_registered_and_only_public_keys_are_shown(
    services: dict[str, Any],
) -> None:
    register = services["register-nodes"]
    public_keys = [f"/keys/{node.domain}.pub" for node in COMPOSE_TOPOLOGY.nodes]
    assert command_of(register) == [
        "register-nodes", COMPOSE_TOPOLOGY.superlink_address, CONTAINER_LAYOUT.ca_certificate,
        *public_keys,
    ]  # fmt: skip
    shown = mounts(register)
    for key in public_keys:
        assert shown[key] == (f"{HOST_STATE}/credentials/keys{key.removeprefix('/keys')}", "ro")
    assert all(not source.endswith(("key", "/keys")) for source, _ in shown.values())
    nodes = [f"{n.domain}-supernode" for n in COMPOSE_TOPOLOGY.nodes]
    for name in nodes:
        assert services[name]["depends_on"] == {
            "register-nodes": {"condition": "service_completed_successfully"}
        }


def test_results_land_on_the_host() -> None:
    executor = load_compose("docker-compose.yml")["services"]["serverapp-executor"]
    assert mounts(executor)["/runs"] == ("./runs", "rw")
    script = (ROOT / "deploy" / "federation.sh").read_text(encoding="utf-8")
    assert 'run-dir=\\"/runs/$name\\"' in script
    assert f"domains=({' '.join(n.domain for n in COMPOSE_TOPOLOGY.nodes)})" in script
    assert f'address = "{COMPOSE_TOPOLOGY.superlink_address}"' in script


def test_the_organisation_node_file_runs_the_same_node_against_a_remote_superlink() -> None:
    services = load_compose("docker-compose.node.yml")["services"]
    assert set(services) == NODE_SERVICES
    node = NodeEndpoint("${SILOREC_DOMAIN}", COMPOSE_TOPOLOGY.nodes[0].runtime_port)
    # The data owner's own floor (silorec.node.floor), from their environment.
    assert command_of(services["supernode"]) == supernode_command(
        node, CONTAINER_LAYOUT, "${SILOREC_SUPERLINK}", floor="${SILOREC_NODE_FLOOR}"
    )
    assert command_of(services["executor"]) == clientapp_executor_command(node)
    assert mounts(services["supernode"]) == {
        CONTAINER_LAYOUT.ca_certificate: ("${SILOREC_CA}", "ro"),
        CONTAINER_LAYOUT.node_key: ("${SILOREC_KEY}", "ro"),
    }
    assert mounts(services["executor"]) == {
        CONTAINER_LAYOUT.node_data: ("${SILOREC_DATA}", "ro"),
        CONTAINER_LAYOUT.node_audit: ("${SILOREC_AUDIT}", "rw"),
        CONTAINER_LAYOUT.node_cache: ("cache", "rw"),
    }
    for service in services.values():
        assert service["network_mode"] == "host"


def test_image_builds_from_any_base_offline_and_compose_passes_only_its_arguments() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    arguments = dict(re.findall(r"^ARG (\w+)=(.*)$", dockerfile, flags=re.MULTILINE))
    assert arguments["BASE_IMAGE"] == "python:3.11-slim"
    assert {"PIP_CA_BUNDLE", "PIP_WHEELS", "TORCH_INDEX_URL"} <= set(arguments)
    for name in ("docker-compose.yml", "docker-compose.node.yml"):
        build = load_compose(name)["services"]["supernode" if "node" in name else "superlink"]
        assert set(build["build"]["args"]) <= set(arguments), name
        assert build["build"]["network"] == "host"
    for key, value in OFFLINE_FLOWER_ENV.items():
        assert re.search(rf"^\s+{key}={value}\b", dockerfile, flags=re.MULTILINE), key
    assert "apt-get install" in dockerfile and "python3-venv" in dockerfile


def project_files() -> dict[str, bytes | Path]:
    """The project's files as ``flwr run`` collects them, without the virtualenv and
    caches (walking those takes longer than the test)."""
    skipped = {".venv", ".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build"}
    files: dict[str, bytes | Path] = {}
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders if s not in skipped]
        for name in names:
            path = Path(folder, name)
            files[path.relative_to(ROOT).as_posix()] = path
    return files


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pathspec, inside flwr
def test_the_app_bundle_carries_the_apps_and_no_deployment_state() -> None:
    build = pytest.importorskip("flwr.cli.build")
    files = project_files()
    # What a compose federation leaves in the project folder.
    files["deploy/local/audit/books/node-books.jsonl"] = b'{"event": "reply"}\n'
    files["deploy/local/credentials/keys/books.pub"] = b"ecdsa-sha2-nistp384 AAAA"
    fab_bytes, _ = build.build_fab_from_files(files)
    fab = zipfile.ZipFile(io.BytesIO(fab_bytes))
    names = [n for n in fab.namelist() if not n.startswith(".info/")]
    assert "clients/app.py" in names and "server/app.py" in names
    assert all(re.fullmatch(r"pyproject\.toml|(clients|server)/.*\.py|scenarios/[^/]*\.toml", n)
               for n in names), names  # fmt: skip
