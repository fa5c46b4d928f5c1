"""The node's two client mods: the audit trail (outermost) and the wire policy.

``ClientApp(mods=[wire.audit_mod, wire.policy_mod])`` with ``wire = WireGuard(APP_DIR)``:

- :meth:`WireGuard.policy_mod` runs the handler and judges its reply with the node's
  guard (:mod:`silorec.node.guard`). A reply that breaks the wire policy or trips a
  leakage detector is *not sent*: it becomes an error reply
  (``MOD_FAILED_PRECONDITION``) whose reason names each violation. An exception
  becomes the error reply Flower would make, and identifiers of the domain are
  redacted from every error reason first.
- :meth:`WireGuard.audit_mod` appends the line describing what actually leaves, with
  the policy's verdict, to the node's audit log and fsyncs it before the reply goes
  on. If the line cannot be written the reply is withheld: no log, no send.

Where the log goes: the node config's ``audit-dir`` when set (deployment: the data
owner decides), else ``<run-dir>/audit/`` when the run config names a run directory
(in-process and ``silorec simulate`` runs share a machine with the server), else
``./silorec-audit/``; the file is ``node-<domain>.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode

from silorec.apps.client import node_for
from silorec.apps.node_dirs import node_log_dir
from silorec.apps.payload import log_entry, payload_of
from silorec.apps.run_config import scenario_from_run_config
from silorec.audit.log import AuditLog, node_log_name
from silorec.audit.payload import PayloadInfo, describe
from silorec.audit.verdict import Verdict
from silorec.logs import get_logger
from silorec.node import DomainNode, NodeConfigError, assign_domain
from silorec.node.floor import FloorRefused
from silorec.privacy import PrivacyBudgetExceeded
from silorec.scenario import ScenarioError

log = get_logger("silorec.audit")

@dataclass(frozen=True)
class NodeAuditSettings:
    """Which domain this node holds, and where it logs. There is no switch: the guard,
    the wire policy and the audit log are always on, whatever the scenario says (the
    scenario is the server's; ``audit.enabled`` is ignored)."""

    domain: str | None
    log_path: Path


def node_audit_settings(context: Context, app_dir: Path) -> NodeAuditSettings:
    """Audit settings of the node behind ``context``. A scenario that cannot be read
    still logs, under the node's id instead of its domain."""
    try:
        scenario, _, _ = scenario_from_run_config(context.run_config, app_dir)
    except (ScenarioError, OSError):
        scenario = None
    domain = None
    if scenario is not None:
        try:
            domain = assign_domain(scenario, context.node_config).domain.name
        except NodeConfigError:
            pass
    name = node_log_name(domain or f"unassigned-{context.node_id}")
    return NodeAuditSettings(
        domain=domain,
        log_path=node_log_dir(context) / name,
    )


@dataclass(frozen=True)
class _Judgement:
    """What the policy mod decided, handed to the audit mod for the log line."""

    reply: Message
    info: PayloadInfo | None
    verdict: Verdict


class WireGuard:
    """The audit and policy mods of one ClientApp, sharing the policy's verdicts."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = app_dir
        self._judgements: dict[str, _Judgement] = {}  # by the instruction's message id

    # -- the audit trail ---------------------------------------------------------

    def audit_mod(
        self, message: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Log every reply before it leaves; withhold it if the log cannot be written."""
        settings = node_audit_settings(context, self.app_dir)
        try:
            reply = call_next(message, context)
        except Exception as exc:  # noqa: BLE001 - only reached without a working policy mod
            reply = _error(
                message,
                ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                f"{type(exc)}:<'withheld: raised outside the wire policy'>",
            )
        judged = self._judgements.pop(message.metadata.message_id, None)
        verdict = info = None
        if judged is not None and judged.reply is reply:
            verdict, info = judged.verdict, judged.info
        entry = log_entry(
            reply,
            "reply",
            node_id=context.node_id,
            domain=settings.domain,
            info=info,
            verdict=verdict,
        )
        try:
            AuditLog(settings.log_path).append(entry)
        except OSError as exc:
            return _error(
                message,
                ErrorCode.MOD_FAILED_PRECONDITION,
                f"reply withheld: the audit log {settings.log_path} cannot be "
                f"written ({exc.strerror or exc})",
            )
        return reply

    # -- the wire policy -----------------------------------------------------------

    def policy_mod(
        self, message: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Judge the handler's reply; block it, or redact its error reason. A refusal
        (the node's floor, its privacy budget) is logged here, on the node."""
        try:
            reply = call_next(message, context)
        except Exception as exc:  # noqa: BLE001 - becomes an error reply, as in Flower
            if isinstance(exc, FloorRefused | PrivacyBudgetExceeded):
                log.warning("node %s refused a '%s' request: %s", context.node_id,
                            message.metadata.message_type, exc)  # fmt: skip
            reply = _error(message, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(exc)}:<'{exc}'>")
        node = self._node(context)
        if reply.has_error():
            return self._redacted(message, reply, node)
        if node is None:  # a reply without a node to judge it by cannot be checked
            raise RuntimeError("the node's domain could not be prepared to check its reply")
        payload = payload_of(reply.content)
        info = describe(payload)
        verdict = node.guard.inspect(message.metadata.message_type, payload, info)
        if not verdict.allowed:
            log.warning(
                "node %s: wire policy blocked the %s reply of domain '%s': %s",
                context.node_id,
                message.metadata.message_type,
                node.name,
                verdict.reason(),
            )
            reason = (
                f"wire policy blocked the '{message.metadata.message_type}' reply of "
                f"domain '{node.name}': {verdict.reason()}"
            )
            reply, info = _error(message, ErrorCode.MOD_FAILED_PRECONDITION, reason), None
        self._judgements[message.metadata.message_id] = _Judgement(reply, info, verdict)
        return reply

    def _node(self, context: Context) -> DomainNode | None:
        try:
            return node_for(context, self.app_dir)
        except Exception:  # noqa: BLE001 - the handler already reported why
            return None

    def _redacted(self, message: Message, reply: Message, node: DomainNode | None) -> Message:
        """An error reply with the domain's identifiers removed from its reason (only
        possible once the data is loaded: before, no identifier was read)."""
        redactions = 0
        if node is not None and node.data_ready:
            reason, redactions = node.scanners.redact(reply.error.reason)
            if redactions:
                reply = _error(message, int(reply.error.code), reason)
        self._judgements[message.metadata.message_id] = _Judgement(
            reply, None, Verdict(redactions=redactions)
        )
        return reply


def _error(message: Message, code: int, reason: str) -> Message:
    return Message(Error(code=code, reason=reason), reply_to=message)
