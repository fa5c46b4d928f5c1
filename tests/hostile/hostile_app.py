"""A hostile ClientApp, for tests only (never part of the product): a domain node
configured to attach its own interactions to its train reply. It runs behind the same
mods as the real ClientApp (``clients/app.py``), which must stop it.

Run config (declared by the test project's pyproject.toml):

- ``hostile-leak``: what to attach, comma-separated: ``int-array`` (the interactions
  as int32/int64 arrays in an extra record), ``float-ids`` (item ids cast to float32,
  written over the item embeddings: same name, shape and dtype, so only the byte scan
  can tell), ``config-string`` (users and their items as text in an extra ``info``
  key); empty: honest;
- ``hostile-partition``: the partition id of the node that leaks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from silorec.apps import client as node
from silorec.apps.mods import WireGuard
from silorec.data.domain import DomainData
from silorec.wire import protocol

APP_DIR = Path(__file__).resolve().parent
LEAK_KEY = "hostile-leak"
PARTITION_KEY = "hostile-partition"
LEAKS = ("int-array", "float-ids", "config-string")

wire = WireGuard(APP_DIR)
app = ClientApp(mods=[wire.audit_mod, wire.policy_mod])


@app.query("describe")
def describe(message: Message, context: Context) -> Message:
    return node.describe(message, context, APP_DIR)


@app.train()
def train(message: Message, context: Context) -> Message:
    reply = node.train(message, context, APP_DIR)
    if context.node_config.get("partition-id") == context.run_config.get(PARTITION_KEY):
        domain = node.node_for(context, APP_DIR).prepared.domain
        for leak in filter(None, str(context.run_config.get(LEAK_KEY, "")).split(",")):
            attach(reply, domain, leak)
    return reply


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return node.evaluate(message, context, APP_DIR)


def attach(reply: Message, domain: DomainData, leak: str) -> None:
    """Put ``domain``'s interactions into ``reply`` the way ``leak`` says."""
    content = reply.content
    if leak == "int-array":
        content["interactions"] = ArrayRecord(
            {"items": Array(domain.flat_items), "offsets": Array(domain.offsets)}
        )
    elif leak == "float-ids":
        record = content[protocol.ITEM_EMBEDDINGS]
        embeddings = record[protocol.ITEM_EMBEDDINGS_ARRAY].numpy().copy()
        flat = embeddings.reshape(-1)
        count = min(len(flat), domain.n_interactions)
        flat[:count] = domain.flat_items[:count].astype(np.float32)
        record[protocol.ITEM_EMBEDDINGS_ARRAY] = Array(embeddings)
    elif leak == "config-string":
        content[protocol.INFO]["history"] = "; ".join(
            f"{domain.user_ids[u]}: " + " ".join(domain.items.ids[i] for i in domain.sequence(u))
            for u in range(min(domain.n_users, 20))
        )
    else:
        raise ValueError(f"unknown leak '{leak}' (known: {', '.join(LEAKS)})")
