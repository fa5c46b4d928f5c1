"""Where a node keeps its audit log and privacy ledger: the node config's
``audit-dir`` when set (deployment: the data owner decides), else ``<run-dir>/audit/``
when the run config names a run directory (in-process and ``silorec simulate`` runs
share a machine with the server), else ``./silorec-audit/``. Its own module, used by
the handlers and the mods alike, so neither imports the other for it."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context

from silorec.apps.run_config import RUN_DIR
from silorec.audit.log import AUDIT_DIR
from silorec.node.assignment import AUDIT_DIR_KEY

#: Where a node logs when neither the node config nor the run config says.
FALLBACK_AUDIT_DIR = "silorec-audit"


def node_log_dir(context: Context) -> Path:
    """The folder of this node's audit log and ledger (see the module docstring)."""
    configured = str(context.node_config.get(AUDIT_DIR_KEY, "") or "")
    if configured:
        return Path(configured).expanduser()
    run_dir = str(context.run_config.get(RUN_DIR, "") or "")
    if run_dir:
        return Path(run_dir).expanduser() / AUDIT_DIR
    return Path.cwd() / FALLBACK_AUDIT_DIR
