"""ClientApp: one domain node. Thin: the work is in :mod:`silorec.apps.client`.

Which domain this node holds comes from its node config (deployment:
``--node-config 'domain="beauty" data-dir="/data/beauty"'``) or from its partition id
mapped through the scenario (simulation and the in-process engine).
"""

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from silorec.apps import client as node

APP_DIR = Path(__file__).resolve().parents[1]

app = ClientApp()


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
