"""Domains joining and leaving a merge without retraining anyone.

A run keeps what its merges were made from (``merge-inputs/``: the screened uploads,
catalogue embeddings, mean history lengths; see :mod:`.merge_inputs`). ``silorec
merge remove RUN --domain C`` recomputes every ``[[merges]]`` entry of the scenario
over the other domains' stored inputs; ``silorec merge add RUN --domain D --from
OTHER`` takes D's stored inputs from another run that started from the same θ0 (the
only way D's upload is comparable) and recomputes with D appended. Nobody retrains:
task-arithmetic-family merges come out exactly as if D had (or C had not) been there
from the start; learned merges (MergeRec, distill) re-optimise on the server from the
stored catalogues, as they did in the run.

The result is a new run folder, derived from the first: the same scenario, θ0 and
node records (the leaving domain becomes ``unseen``, the joining one ``merged``),
the kept base and individual rows, the new merges with their merge card and
``merge-inputs/``, and ``derived_from`` saying what changed. Its merges are *not yet
evaluated*: that needs the domain nodes, in a federation round.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from silorec.apps.server_output import save_models
from silorec.provenance.card import write_card
from silorec.provenance.hashing import weights_sha256
from silorec.provenance.merge_inputs import (
    MergeInputsError,
    StoredInputs,
    load_merge_inputs,
    load_npz,
    save_merge_inputs,
    saved_model_file,
)
from silorec.provenance.replay import recompute
from silorec.results import RunResults, load_run
from silorec.results.io import write_json_atomic, write_text_atomic
from silorec.runtime import use_deterministic_algorithms
from silorec.scenario import Scenario


class MembershipError(ValueError):
    """A join or leave that cannot be done; the message names the run and domain."""


@dataclass(frozen=True)
class Remerge:
    """What ``remerge`` wrote: the new run, its domains and merge labels."""

    run_dir: Path
    order: list[str]
    merges: list[str]
    failures: list[str]


def remerge(
    run_dir: Path,
    out_dir: Path,
    *,
    remove: Sequence[str] = (),
    add: Sequence[str] = (),
    source_run: Path | None = None,
) -> Remerge:
    """Recompute ``run_dir``'s merges without the domains ``remove`` and with the
    domains ``add`` (their stored inputs taken from ``source_run``); write the new
    run to ``out_dir`` (absent), all at once."""
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: exists; choose a new folder for the re-merged run")
    results = load_run(run_dir)
    scenario = Scenario.model_validate(results.scenario)
    theta0 = load_npz(saved_model_file(run_dir, "theta0"))
    inputs = load_merge_inputs(run_dir)
    uploads = {d: _upload(run_dir, d) for d in inputs.order}
    nodes = {n.domain: n for n in results.nodes}

    for name in remove:
        if name not in inputs.order:
            raise MembershipError(
                f"{run_dir}: domain {name!r} is not in the merge (merged: "
                f"{', '.join(inputs.order)})"
            )
    joining: dict[str, Any] = {}
    if add:
        if source_run is None:
            raise MembershipError(
                "a joining domain's upload comes from another run: give --from RUN"
            )
        joining = _joining(run_dir, theta0, inputs, Path(source_run).resolve(), add)
        for name, (stored, node, upload) in joining.items():
            _take(inputs, stored, name)
            uploads[name] = upload
            nodes[name] = node

    order = [d for d in inputs.order if d not in remove] + list(add)
    if not order:
        raise MembershipError(f"{run_dir}: removing {', '.join(remove)} leaves no domain to merge")
    use_deterministic_algorithms()
    merged, infos, failures = recompute(scenario, theta0, inputs, scenario.merges, order)
    if not merged:
        raise MembershipError(f"{run_dir}: no merge could be recomputed: {'; '.join(failures)}")

    roles = {d: ("merged" if d in order else "unseen") for d in nodes}
    derived = _derived_results(results, out_dir.name, infos, order, roles, nodes, failures)
    derived.derived_from = {
        "run_dir": str(run_dir), "run_id": results.run_id, "removed": list(remove),
        "added": list(add), "added_from": str(source_run) if add else None,
        "merge_order": order, "evaluated": False,
    }  # fmt: skip
    models: dict[str, tuple[str, str | None, dict[str, np.ndarray]]] = {
        "theta0": ("base", None, theta0)
    }
    for name in order:
        models[f"individual:{name}"] = ("individual", name, uploads[name])
    for label, weights in merged.items():
        models[label] = ("merge", None, weights)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_models(staging, models)
        save_merge_inputs(
            staging, order, inputs.models, uploads, inputs.item_embeddings,
            inputs.item_texts, inputs.mean_lengths, inputs.text_dim,
        )  # fmt: skip
        write_text_atomic(staging / "scenario.toml", results.scenario_toml)
        write_json_atomic(staging / "results.json", derived.model_dump(mode="json"))
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_card(out_dir)  # names out_dir, so written once the folder has its name
    return Remerge(out_dir, order, list(merged), failures)


def _upload(run_dir: Path, domain: str) -> dict[str, np.ndarray]:
    try:
        return load_npz(saved_model_file(run_dir, f"individual:{domain}"))
    except MergeInputsError as exc:
        raise MembershipError(str(exc)) from None


def _joining(
    run_dir: Path,
    theta0: dict[str, np.ndarray],
    inputs: StoredInputs,
    source_run: Path,
    names: Sequence[str],
) -> dict[str, Any]:
    """The joining domains' stored inputs, node records and uploads from ``source_run``,
    which must have started from the same θ0."""
    source_theta0 = load_npz(saved_model_file(source_run, "theta0"))
    if weights_sha256(source_theta0) != weights_sha256(theta0):
        raise MembershipError(
            f"{source_run}: its θ0 is not {run_dir}'s; a domain joins only with an upload "
            "fine-tuned from the same θ0"
        )
    stored = load_merge_inputs(source_run)
    source_nodes = {n.domain: n for n in load_run(source_run).nodes}
    out: dict[str, Any] = {}
    for name in names:
        if name in inputs.order:
            raise MembershipError(f"{run_dir}: domain {name!r} is already in the merge")
        if name not in stored.order:
            raise MembershipError(
                f"{source_run}: no stored upload of domain {name!r} (merged there: "
                f"{', '.join(stored.order)})"
            )
        out[name] = (stored, source_nodes[name], _upload(source_run, name))
    return out


def _take(inputs: StoredInputs, stored: StoredInputs, name: str) -> None:
    if stored.text_dim != inputs.text_dim:
        raise MembershipError(
            f"domain {name!r}: its catalogue embeddings are {stored.text_dim}-d, the run's "
            f"{inputs.text_dim}-d"
        )
    inputs.models[name] = stored.models[name]
    inputs.item_embeddings[name] = stored.item_embeddings[name]
    if name in stored.item_texts:
        inputs.item_texts[name] = stored.item_texts[name]
    inputs.mean_lengths[name] = stored.mean_lengths[name]


def _derived_results(
    results: RunResults,
    run_id: str,
    infos: list[dict[str, Any]],
    order: list[str],
    roles: dict[str, str],
    nodes: dict[str, Any],
    failures: list[str],
) -> RunResults:
    """The first run's record, re-pointed at the new merge: its base rows, the kept
    individuals' rows (their models did not change) with updated domain roles."""
    kept = {"theta0"} | {f"individual:{d}" for d in order}
    rows = [
        row.model_copy(update={"domain_role": roles[row.domain]})
        for row in results.rows
        if row.model in kept and row.domain in roles
    ]
    return results.model_copy(
        update={
            "run_id": run_id,
            "nodes": [n.model_copy(update={"role": roles[d]}) for d, n in nodes.items()],
            "rows": rows,
            "merges": infos,
            "paired": [],
            "failures": [*results.failures, *[_failure(f) for f in failures]],
        }
    )


def _failure(message: str) -> Any:
    from silorec.results.schema import Failure

    return Failure(phase="merge", reason=message)
