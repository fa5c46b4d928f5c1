"""The processes of a silorec deployment and their exact command lines, in one place.

A federation is one SuperLink (the merge server's Flower endpoint) with its ServerApp
executor, and per domain one SuperNode with its ClientApp executor (``--isolation
process``: the executors are separate processes, or containers, that we start
ourselves). TLS and SuperNode authentication are always on: the SuperLink presents a
certificate signed by the federation's CA, and accepts only SuperNodes whose public
key was registered (``flwr supernode register``).

The same description produces the commands of the loopback test (host paths, free
ports) and is what ``docker-compose.yml`` must match (container paths, fixed ports):
``tests/test_deployment_static.py`` compares them, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from silorec.node.assignment import AUDIT_DIR_KEY, DATA_DIR_KEY, DOMAIN_KEY

#: Node-config key naming the folder where a node writes its audit log.
#: Every process of a federation on one machine listens on the loopback interface; a
#: SuperLink serving nodes on other machines listens where they reach it (see
#: docs/deployment.md, "The merge server for remote nodes").
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Layout:
    """Where each process finds its files, as that process sees them.

    Node paths are templates with ``{domain}``: on one host every node has its own
    folders; in containers every node sees the same paths (its own mounts).
    """

    ca_certificate: str
    superlink_certificate: str
    superlink_key: str
    database: str
    node_key: str
    node_data: str
    node_audit: str
    node_cache: str  # $SILOREC_CACHE_DIR: the node's prepared data and text embeddings

    def for_node(self, template: str, domain: str) -> str:
        """A node path template filled in for ``domain``."""
        return template.format(domain=domain)


#: The paths inside the containers of ``docker-compose.yml`` and
#: ``docker-compose.node.yml`` (each service mounts only what it needs there).
CONTAINER_LAYOUT = Layout(
    ca_certificate="/credentials/ca.crt",
    superlink_certificate="/credentials/superlink.crt",
    superlink_key="/credentials/superlink.key",
    database="/var/lib/silorec/state/superlink.db",
    node_key="/credentials/node.key",
    node_data="/data",
    node_audit="/audit",
    node_cache="/var/lib/silorec/cache",
)


def host_layout(root: str) -> Layout:
    """Paths for a whole federation on one host, under ``root``: the credentials as
    ``deploy/make-certs.sh -o ROOT/credentials`` writes them, and per domain
    ``ROOT/nodes/DOMAIN/{data,audit,cache}``."""
    credentials = f"{root}/credentials"
    return Layout(
        ca_certificate=f"{credentials}/ca.crt",
        superlink_certificate=f"{credentials}/superlink.crt",
        superlink_key=f"{credentials}/superlink.key",
        database=f"{root}/superlink/state.db",
        node_key=f"{credentials}/keys/{{domain}}",
        node_data=f"{root}/nodes/{{domain}}/data",
        node_audit=f"{root}/nodes/{{domain}}/audit",
        node_cache=f"{root}/nodes/{{domain}}/cache",
    )


@dataclass(frozen=True)
class NodeEndpoint:
    """One domain node: the domain it serves and the port of its SuperNode's Runtime
    API, where its ClientApp executor connects (distinct per node on one host)."""

    domain: str
    runtime_port: int


@dataclass(frozen=True)
class Topology:
    """A whole federation: the SuperLink's port and the nodes."""

    superlink_port: int
    nodes: tuple[NodeEndpoint, ...]

    @property
    def superlink_address(self) -> str:
        """Where SuperNodes, executors and the ``flwr`` CLI reach the SuperLink."""
        return f"{LOOPBACK}:{self.superlink_port}"

    def node(self, domain: str) -> NodeEndpoint:
        """The node serving ``domain``."""
        for node in self.nodes:
            if node.domain == domain:
                return node
        known = ", ".join(n.domain for n in self.nodes)
        raise KeyError(f"the federation has no node for domain '{domain}' (nodes: {known})")


def topology_for(domains: list[str], superlink_port: int, first_runtime_port: int) -> Topology:
    """Nodes for ``domains`` on consecutive Runtime API ports."""
    return Topology(
        superlink_port=superlink_port,
        nodes=tuple(
            NodeEndpoint(domain, first_runtime_port + i) for i, domain in enumerate(domains)
        ),
    )


#: The compose federation: the default scenario's domains on fixed ports.
COMPOSE_TOPOLOGY = topology_for(["books", "toys", "kitchen"], 9092, 9094)


def node_config(domain: str, layout: Layout, floor: str = "") -> str:
    """The SuperNode's ``--node-config``: which domain it serves, where its data is
    (read-only), where it writes its audit log, and its own privacy floor (``floor``:
    more ``key=value`` pairs, see :mod:`silorec.node.floor`)."""
    pairs = " ".join(
        f'{key}="{value}"'
        for key, value in (
            (DOMAIN_KEY, domain),
            (DATA_DIR_KEY, layout.for_node(layout.node_data, domain)),
            (AUDIT_DIR_KEY, layout.for_node(layout.node_audit, domain)),
        )
    )
    return f"{pairs} {floor}" if floor else pairs


def superlink_command(topology: Topology, layout: Layout) -> list[str]:
    """The SuperLink: TLS, SuperNode authentication, executors started by us, state in
    a database file, no dependency installation at run time."""
    return [
        "flower-superlink",
        "--isolation", "process",
        "--ssl-ca-certfile", layout.ca_certificate,
        "--ssl-certfile", layout.superlink_certificate,
        "--ssl-keyfile", layout.superlink_key,
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--database", layout.database,
        "--host", LOOPBACK,
        "--port", str(topology.superlink_port),
    ]  # fmt: skip


def serverapp_executor_command(topology: Topology, layout: Layout) -> list[str]:
    """The merge server's executor: runs each run's ServerApp, over TLS."""
    return [
        "flower-superexec",
        "--runtime-api-address", topology.superlink_address,
        "--root-certificates", layout.ca_certificate,
    ]  # fmt: skip


def supernode_command(
    node: NodeEndpoint, layout: Layout, superlink_address: str, floor: str = ""
) -> list[str]:
    """A domain's SuperNode: TLS to the SuperLink, authenticated by its private key,
    its node config (with the data owner's ``floor``), its Runtime API on its own
    loopback port."""
    return [
        "flower-supernode",
        "--superlink", superlink_address,
        "--root-certificates", layout.ca_certificate,
        "--auth-supernode-private-key", layout.for_node(layout.node_key, node.domain),
        "--isolation", "process",
        "--node-config", node_config(node.domain, layout, floor),
        "--host", LOOPBACK,
        "--port", str(node.runtime_port),
    ]  # fmt: skip


def clientapp_executor_command(node: NodeEndpoint) -> list[str]:
    """A domain's ClientApp executor. Plain text is acceptable here: it talks only to
    its own SuperNode over the loopback interface of the same machine."""
    return [
        "flower-superexec",
        "--insecure",
        "--runtime-api-address", f"{LOOPBACK}:{node.runtime_port}",
    ]  # fmt: skip
