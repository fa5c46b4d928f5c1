"""The node's privacy floor: limits a domain node sets for itself, which no scenario
can loosen.

The scenario is written by whoever runs the merge server and reaches every node in
the run config, so anything it says is a *request*. The floor comes from the node's
own configuration (``--node-config`` in deployment, the ``node-config`` of
docker-compose.node.yml; for simulated nodes ``silorec run/simulate --node-config``,
which reaches every simulated node through :data:`NODE_CONFIG_ENV`). A request beyond
the floor is refused with :class:`FloorRefused`, whose reason is logged on the node
and travels to the server as the reply's error; the run goes on with the others.

Keys (all optional):

- ``max-epsilon``: refuse to train or upload unless the upload is differentially
  private and the domain's ledger stays at or under this ε (the ledger composes
  every release of the domain, across runs for a fixed ``audit-dir``);
- ``max-epochs``: refuse a training request for more local epochs than this;
- ``allow-item-text``: whether the catalogue's item texts may leave (the
  text-encoder learned-merge path); default false, so that path is refused unless
  the node allows it;
- ``max-evaluate-requests``: evaluate requests served per run (default 3; the merge
  server sends one), so evaluation is not an unbounded metric oracle;
- ``max-evaluate-models``: models per evaluate request (default 64);
- ``min-users``: the fewest users behind any metric the node reports (default 10).

The guard, the wire policy and the audit log are not in the floor: they are always
on (:mod:`silorec.apps.mods`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from silorec.node.assignment import NodeConfigError

#: Environment variable holding the node config of simulated nodes (in-process and
#: Flower simulation), Flower's syntax: ``'max-epochs=5 allow-item-text=true'``. A
#: key in a node's own node config wins over it.
NODE_CONFIG_ENV = "SILOREC_NODE_CONFIG"

_PAIR = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|\S+)')


class FloorRefused(PermissionError):
    """A request the node's floor does not allow (the reason names the key)."""


class NodeFloor(BaseModel):
    """The limits of one domain node (see the module docstring)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    max_epsilon: float | None = Field(None, alias="max-epsilon", gt=0)
    max_epochs: int | None = Field(None, alias="max-epochs", ge=1)
    allow_item_text: bool = Field(False, alias="allow-item-text")
    max_evaluate_requests: int = Field(3, alias="max-evaluate-requests", ge=1)
    max_evaluate_models: int = Field(64, alias="max-evaluate-models", ge=1)
    min_users: int = Field(10, alias="min-users", ge=1)

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodeFloor:
        """The floor a node config sets; a bad value is an error naming its key."""
        keys = {f.alias for f in cls.model_fields.values()}
        given = {k: v for k, v in node_config.items() if k in keys}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise NodeConfigError(f"node config: {problems}") from None

    def describe(self) -> dict[str, Any]:
        """The floor as its node-config keys (for logs and the threat model)."""
        return self.model_dump(by_alias=True)

    # -- checks --------------------------------------------------------------------

    def check_train(
        self, domain: str, *, epochs: int, mechanism: str, uploads_item_texts: bool
    ) -> None:
        """Refuse a training request the floor does not allow."""
        if self.max_epochs is not None and epochs > self.max_epochs:
            raise FloorRefused(
                f"domain '{domain}' refuses to train: {epochs} local epochs requested, "
                f"its node floor max-epochs is {self.max_epochs}"
            )
        if self.max_epsilon is not None and mechanism == "none":
            raise FloorRefused(
                f"domain '{domain}' refuses to train: its node floor max-epsilon is "
                f"{self.max_epsilon:g}, and the scenario uploads without differential "
                "privacy (privacy.mechanism = 'none', ε = ∞)"
            )
        if uploads_item_texts and not self.allow_item_text:
            raise FloorRefused(
                f"domain '{domain}' refuses to send its catalogue's item texts (the "
                "text-encoder learned merge needs them): its node config does not set "
                "allow-item-text=true"
            )

    def budget(self, scenario_budget: float | None) -> float | None:
        """The ε budget the ledger enforces: the tighter of the scenario's and the
        floor's (a scenario can only tighten)."""
        budgets = [b for b in (scenario_budget, self.max_epsilon) if b is not None]
        return min(budgets) if budgets else None

    def check_users(self, domain: str, what: str, n_users: int) -> None:
        """Refuse to report a metric over fewer than ``min-users`` users."""
        if n_users < self.min_users:
            raise FloorRefused(
                f"domain '{domain}' refuses to report {what}: {n_users} user(s) behind "
                f"it, its node floor min-users is {self.min_users}"
            )

    def check_evaluate(self, domain: str, *, served: int, n_models: int) -> None:
        """Refuse an evaluate request past the per-run count or model limit
        (``served``: requests already answered in this run)."""
        if served >= self.max_evaluate_requests:
            raise FloorRefused(
                f"domain '{domain}' refuses to evaluate: it already answered {served} "
                f"evaluate request(s) in this run, its node floor max-evaluate-requests "
                f"is {self.max_evaluate_requests}"
            )
        if n_models > self.max_evaluate_models:
            raise FloorRefused(
                f"domain '{domain}' refuses to evaluate {n_models} models in one request: "
                f"its node floor max-evaluate-models is {self.max_evaluate_models}"
            )


def parse_node_config(text: str) -> dict[str, Any]:
    """``'a=1 b="x y" c=true'`` (Flower's node-config syntax) -> a dict of TOML values;
    a value that is not TOML is kept as a string."""
    out: dict[str, Any] = {}
    position, text = 0, text.strip()
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None:
            raise NodeConfigError(
                f"node config {text!r}: expected key=value at {text[position:]!r}"
            )
        key, raw = match.groups()
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return out


def merged_node_config(
    node_config: Mapping[str, Any], environment: Mapping[str, str]
) -> dict[str, Any]:
    """The node's own config over the simulated nodes' shared one (``environment``
    holds :data:`NODE_CONFIG_ENV`)."""
    shared = parse_node_config(environment.get(NODE_CONFIG_ENV, ""))
    return {**shared, **dict(node_config)}
