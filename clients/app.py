"""ClientApp: one domain node. Thin: the work is in :mod:`silorec.apps.client`.

Which domain this node holds comes from its node config (deployment:
``--node-config 'domain="beauty" data-dir="/data/beauty"'``) or from its partition id
mapped through the scenario (simulation and the in-process engine). Every reply is
judged by the wire policy and logged (:mod:`silorec.apps.mods`) before it leaves.
"""

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from silorec.apps import client as node
from silorec.apps.mods import WireGuard

APP_DIR = Path(__file__).resolve().parents[1]

# Outermost the audit trail (logs what actually leaves), inside it the wire policy
# (blocks a reply that breaks the allow-list or carries interaction data).
wire = WireGuard(APP_DIR)
app = ClientApp(mods=[wire.audit_mod, wire.policy_mod])


@app.query("describe")
def describe(message: Message, context: Context) -> Message:
    """Prepare this node's domain and report its size."""
    return node.describe(message, context, APP_DIR)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Fine-tune the received model on this domain; reply with weights only."""
    return node.train(message, context, APP_DIR)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluate the received models on this domain; reply with metrics only."""
    return node.evaluate(message, context, APP_DIR)
