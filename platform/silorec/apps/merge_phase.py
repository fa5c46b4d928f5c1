"""The merge phase of the merge server: every ``[[merges]]`` entry of the scenario run
on the uploaded (screened) models, one failure never costing the other merges.

It needs nothing from Flower: the uploaded weights, the catalogues the nodes sent
(text embeddings, and item texts where the text-encoder's learned merge needs them)
and each domain's interactions per user from its describe reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from silorec.logs import get_logger
from silorec.merging.base import MergeContext
from silorec.merging.registry import get_method
from silorec.merging.registry import merge as merge_models
from silorec.models import ItemInputs, Weights, build_model, catalogue_inputs, to_numpy, to_tensors
from silorec.runtime import PeakMemory, resolve_device
from silorec.scenario import MergeSpec, Scenario

log = get_logger("silorec.server")

#: Per merged domain, in merge order: item inputs for the model, text embeddings.
Catalogues = tuple[list[ItemInputs], list[torch.Tensor]]


@dataclass
class MergeInputs:
    """What the merges may use, per merged domain name."""

    models: Mapping[str, Weights]  # screened uploads (numpy)
    item_embeddings: Mapping[str, np.ndarray]
    item_texts: Mapping[str, list[str]]
    mean_lengths: Mapping[str, float]  # 0: unknown
    text_dim: int
    upload_info: dict[str, Any] = field(default_factory=dict)


def run_merges(
    scenario: Scenario,
    theta0: Weights,
    order: Sequence[str],
    inputs: MergeInputs,
    fail: Callable[[str], None],
    specs: Sequence[MergeSpec] | None = None,
) -> tuple[dict[str, Weights], list[dict[str, Any]]]:
    """Every merge of ``scenario`` (or ``specs``: e.g. a weaving fusion) over the
    models ``order``: the merged weights by label and one info record per merge that
    succeeded (method, parameters, seconds, the learned merges' diagnostics). A merge
    that raises is reported through ``fail`` with its label and the others go on."""
    base = to_tensors(theta0)
    finetuned = [to_tensors(inputs.models[name]) for name in order]
    merged: dict[str, Weights] = {}
    infos: list[dict[str, Any]] = []
    catalogues: Catalogues | None = None  # built once, for the first learned merge
    for spec in scenario.merges if specs is None else specs:
        label = spec.display_label
        method = get_method(spec.method)
        context = None
        if method.needs_context:
            catalogues = catalogues or _catalogues(scenario, order, inputs)
            context = _context(scenario, catalogues, order, inputs)
        started = time.perf_counter()
        try:
            with PeakMemory() as memory:
                result = merge_models(spec.method, spec.params, base, finetuned,
                                      seed=scenario.seed, context=context)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one bad merge must not cost the others
            fail(f"{label}: {type(exc).__name__}: {exc}")
            continue
        merged[label] = to_numpy(result)
        seconds = time.perf_counter() - started
        info = {"label": label, "method": spec.method, "params": spec.params,
                "learned": method.needs_context, "domains": list(order),
                "seconds": round(seconds, 4), "peak_rss_mib": memory.mib,
                "peak_rss_added_mib": memory.added_mib,
                **inputs.upload_info}  # fmt: skip
        if memory.gpu_mib is not None:
            info["peak_gpu_mib"] = round(memory.gpu_mib, 1)
        if context is not None and context.diagnostics:
            info["diagnostics"] = context.diagnostics
        infos.append(info)
        log.info("merged %s (%.2f s)", label, seconds)
    return merged, infos


def _catalogues(scenario: Scenario, order: Sequence[str], inputs: MergeInputs) -> Catalogues:
    """Each domain's item inputs for the model and its text embeddings, in ``order``
    (tokenising texts is not free: once per run)."""
    items = [
        catalogue_inputs(scenario.model, inputs.item_embeddings[name], inputs.item_texts.get(name))
        for name in order
    ]
    return items, [torch.from_numpy(inputs.item_embeddings[name]) for name in order]


def _context(
    scenario: Scenario, catalogues: Catalogues, order: Sequence[str], inputs: MergeInputs
) -> MergeContext:
    """What one learned merge may use; a fresh context per merge keeps its diagnostics
    apart."""
    settings, text_dim = scenario.model, inputs.text_dim
    item_inputs, item_embeddings = catalogues
    return MergeContext(
        item_inputs=item_inputs,
        item_embeddings=item_embeddings,
        mean_lengths=[inputs.mean_lengths.get(name, 0.0) for name in order],
        build_model=lambda: build_model(settings, text_dim, seed=0),
        device=resolve_device(scenario.train.device),
        log=log.info,
    )
