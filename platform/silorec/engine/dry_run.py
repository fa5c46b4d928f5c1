"""A dry run of one domain node: the project's real ServerApp and ClientApp in this
process (no network), the node reading its own data folder, and what it sent, as its
audit trail recorded it. ``silorec node check`` shows it to the data owner.

Nothing is duplicated from the apps: the replies are the ClientApp's own, judged by
the node's own wire guard, so the preview cannot drift from what a node sends.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from silorec.apps.run_config import ENGINE, RUN_DIR, SCENARIO
from silorec.audit.log import AUDIT_DIR, LogEntry, node_log_name, read_log
from silorec.engine.inprocess import ServerAppFailed, run_apps
from silorec.engine.project import FlowerProject
from silorec.node.assignment import AUDIT_DIR_KEY, DATA_DIR_KEY, DOMAIN_KEY
from silorec.node.check import CheckTarget, dry_run_scenario
from silorec.results import write_text_atomic

#: The engine named in the dry run's results.
DRY_RUN_ENGINE = "node-check"


@dataclass(frozen=True)
class DryRun:
    """The node's replies as its audit log holds them, and why the run failed, if it
    did (then the replies are those sent until then)."""

    replies: list[LogEntry]
    failure: str | None


def dry_run_node(target: CheckTarget, project: FlowerProject) -> DryRun:
    """Run ``target``'s node once (describe, train, evaluate) against the real merge
    server, in a temporary folder. The node's privacy ledger lives there too: a dry
    run spends none of the domain's privacy budget."""
    with tempfile.TemporaryDirectory(prefix="silorec-node-check-") as work:
        folder = Path(work)
        scenario = dry_run_scenario(target)
        scenario_file = write_text_atomic(
            folder / "scenario.toml",
            tomli_w.dumps(scenario.model_dump(mode="json", by_alias=True, exclude_none=True)),
        )
        node_config = {
            DOMAIN_KEY: target.domain.name,
            DATA_DIR_KEY: str(target.data_dir.resolve()),
            AUDIT_DIR_KEY: str(folder / AUDIT_DIR),
        }
        run_config = {
            **project.run_config,
            SCENARIO: str(scenario_file),
            RUN_DIR: str(folder / "run"),
            ENGINE: DRY_RUN_ENGINE,
        }
        failure = None
        try:
            run_apps(
                project.load(project.serverapp),
                project.load(project.clientapp),
                num_nodes=1,
                run_config=run_config,
                node_configs=[node_config],
            )
        except ServerAppFailed as failed:
            failure = f"{type(failed.error).__name__}: {failed.error}"
        log = folder / AUDIT_DIR / node_log_name(target.domain.name)
        replies = [e for e in read_log(log) if e.event == "reply"] if log.exists() else []
        return DryRun(replies, failure)
