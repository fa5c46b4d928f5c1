"""Recompute a run's merges from what it stored, and check them against the card.

``silorec replay CARD`` reads the merge card, the run's effective scenario, its θ0
and ``merge-inputs/`` (the screened uploads, the catalogue embeddings, the mean
history lengths), runs every ``[[merges]]`` entry again through the same merge phase
the server used, and compares each result with the hash the card recorded. On the
same engine and device the result is bit-identical; when it is not, the report says
which tensors differ and by how much, and which recorded input no longer matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from silorec.apps.merge_phase import MergeInputs, run_merges
from silorec.provenance.card import read_card
from silorec.provenance.hashing import text_sha256, weights_sha256
from silorec.provenance.merge_inputs import (
    MergeInputsError,
    StoredInputs,
    load_merge_inputs,
    load_npz,
    saved_model_file,
)
from silorec.results import load_run
from silorec.runtime import use_deterministic_algorithms
from silorec.scenario import MergeSpec, Scenario


@dataclass
class MergeReplay:
    """One merge recomputed: identical, different (with where), or failed."""

    label: str
    recorded_sha256: str | None
    replayed_sha256: str | None
    error: str | None = None
    max_abs_diff: float | None = None
    differing: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.error is None and self.recorded_sha256 == self.replayed_sha256


@dataclass
class ReplayReport:
    """What a replay found: input problems first, then one entry per merge."""

    run_dir: Path
    input_problems: list[str]
    merges: list[MergeReplay]

    @property
    def identical(self) -> bool:
        return (
            not self.input_problems and bool(self.merges) and all(m.identical for m in self.merges)
        )

    def lines(self) -> list[str]:
        out = [f"input: {p}" for p in self.input_problems]
        for m in self.merges:
            if m.identical:
                out.append(f"{m.label}: bit-identical (sha256 {m.replayed_sha256[:12]})")
            elif m.error:
                out.append(f"{m.label}: could not be recomputed: {m.error}")
            else:
                where = ", ".join(m.differing[:5]) + (" …" if len(m.differing) > 5 else "")
                out.append(
                    f"{m.label}: DIFFERS (recorded {str(m.recorded_sha256)[:12]}, replayed "
                    f"{str(m.replayed_sha256)[:12]}; max |Δ| {m.max_abs_diff:.3g} in "
                    f"{len(m.differing)} tensor(s): {where})"
                )
        return out


def replay(
    card_path: Path, run_dir: Path | None = None, labels: Sequence[str] = ()
) -> ReplayReport:
    """Recompute the card's merges (or only ``labels``) from the run's stored inputs;
    ``run_dir`` overrides where the card says the run is (a moved run, an export)."""
    card = read_card(card_path)
    run_dir = Path(run_dir or card["run"]["run_dir"])
    results = load_run(run_dir)
    problems: list[str] = []
    if text_sha256(results.scenario_toml) != card["run"]["scenario_sha256"]:
        problems.append("the run's scenario is not the one the card recorded")
    scenario = Scenario.model_validate(results.scenario)
    theta0 = load_npz(saved_model_file(run_dir, "theta0"))
    if weights_sha256(theta0) != card["base"]["sha256"]:
        problems.append("θ0 in models/ does not match the card's hash")
    inputs = load_merge_inputs(run_dir)
    recorded = {d["domain"]: d.get("merge_input_sha256") for d in card["domains"]}
    for name, digest in inputs.hashes.items():
        if recorded.get(name) != digest:
            problems.append(f"the merge input of domain {name!r} does not match the card")
    wanted = [m for m in card["merges"] if not labels or m["label"] in labels]
    missing = sorted(set(labels) - {m["label"] for m in wanted})
    if missing:
        raise MergeInputsError(f"the card has no merge labelled {', '.join(map(repr, missing))}")
    specs = {spec.display_label: spec for spec in scenario.merges}
    use_deterministic_algorithms()
    out = [_replay_one(run_dir, scenario, theta0, inputs, specs, entry) for entry in wanted]
    return ReplayReport(run_dir=run_dir, input_problems=problems, merges=out)


def recompute(
    scenario: Scenario,
    theta0: Mapping[str, np.ndarray],
    inputs: StoredInputs,
    specs: Sequence[MergeSpec],
    order: Sequence[str] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], list[dict[str, Any]], list[str]]:
    """Run ``specs`` over the stored inputs of the domains ``order`` (default: all
    that were merged), exactly as the server's merge phase does: merged weights by
    label, the merges' info records and the failures."""
    order = list(order or inputs.order)
    failures: list[str] = []
    merged, infos = run_merges(
        scenario,
        dict(theta0),
        order,
        MergeInputs(
            models=inputs.models,
            item_embeddings=inputs.item_embeddings,
            item_texts=inputs.item_texts,
            mean_lengths=inputs.mean_lengths,
            text_dim=inputs.text_dim,
        ),
        failures.append,
        specs=specs,
    )
    return merged, infos, failures


def _replay_one(
    run_dir: Path,
    scenario: Scenario,
    theta0: Mapping[str, np.ndarray],
    inputs: StoredInputs,
    specs: Mapping[str, MergeSpec],
    entry: Mapping[str, Any],
) -> MergeReplay:
    label = entry["label"]
    spec = specs.get(label)
    if spec is None:
        return MergeReplay(label, entry["sha256"], None, error="not a [[merges]] entry of the run")
    merged, _, failures = recompute(scenario, theta0, inputs, [spec], order=entry["domains"])
    if label not in merged:
        return MergeReplay(label, entry["sha256"], None, error="; ".join(failures) or "no result")
    weights = merged[label]
    result = MergeReplay(label, entry["sha256"], weights_sha256(weights))
    if not result.identical and entry.get("sha256"):
        try:
            saved = load_npz(saved_model_file(run_dir, label))
        except MergeInputsError:
            saved = {}
        diffs = {k: float(np.max(np.abs(weights[k] - saved[k]))) for k in weights if k in saved
                 and saved[k].shape == weights[k].shape}  # fmt: skip
        result.differing = sorted((k for k, d in diffs.items() if d > 0), key=lambda k: -diffs[k])
        result.max_abs_diff = max(diffs.values(), default=float("nan"))
    return result
