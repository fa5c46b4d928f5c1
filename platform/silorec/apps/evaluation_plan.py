"""Which models each domain node evaluates, and which pairs it sums: a plan that grows
linearly in the number of domains.

Sending every model to every node costs N² evaluations for N domains (each domain's
individual model on every other domain: the cross-domain matrix), and pair sums over
every pair of M models cost M² per reply. Neither is needed for what silorec reports:

- a merged domain evaluates θ0, every merge and baseline, its own individual model,
  and ``cross_domain_models`` other domains' individual models, a seeded sample that
  differs per domain (None: all of them, the full matrix);
- an unseen domain evaluates ``unseen_source_models`` (default 32) domains'
  individual models, a seeded sample when there are more (its best single source is
  chosen among them on validation), so that a request stays within a node's
  ``max-evaluate-models`` floor;
- pair sums are taken only against the *references*: θ0 and every merge (the
  report's significance tests compare every model with the best training-free merge,
  chosen on validation, so any merge may be that reference).

Flower-free, data-free: the merge server's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: label -> (kind, source domain or None, anything): the server's models table
ModelKinds = Mapping[str, tuple]

REFERENCE_KINDS = ("base", "merge")


def evaluation_plan(
    models: ModelKinds,
    domains: Sequence[tuple[str, str]],
    cross_domain_models: int | None,
    seed: int,
    unseen_source_models: int | None = None,
) -> dict[str, list[str]]:
    """``{domain: labels}`` in ``models``' order, for ``domains`` as ``(name, role)``
    pairs in the scenario's order (the sample of domain ``i`` uses ``(seed, i)``): a
    merged domain gets its own model and ``cross_domain_models`` others, an unseen one
    ``unseen_source_models`` individual models (None: all)."""
    individuals = {label: entry[1] for label, entry in models.items() if entry[0] == "individual"}
    plan: dict[str, list[str]] = {}
    for index, (name, role) in enumerate(domains):
        own = {label for label, source in individuals.items() if source == name}
        others = [label for label in individuals if label not in own]
        size = unseen_source_models if role == "unseen" else cross_domain_models
        if size is not None and len(others) > size:
            rng = np.random.default_rng([seed, index])
            picked = set(rng.choice(len(others), size=size, replace=False))
            others = [label for i, label in enumerate(others) if i in picked]
        keep = own | set(others)
        plan[name] = [label for label in models if label not in individuals or label in keep]
    return plan


def references(models: ModelKinds, labels: Sequence[str]) -> list[str]:
    """The labels among ``labels`` that pair sums are taken against: θ0 and merges."""
    return [label for label in labels if models[label][0] in REFERENCE_KINDS]
