"""The merge card: where a run's merged models came from, in one JSON and one page.

Written into every run (``merge-card.json`` / ``merge-card.md``) and into every
export. It records what someone else needs to reproduce or check a merge: hashes of
the scenario, of θ0, of each uploaded model (and of the screened version a merge
actually used), of each merge; engine, seeds and versions; each merge's method,
parameters and learned coefficients; each domain's DP ε and δ from its node's ledger;
what left each node (the audit verdict and a hash of every audit log); the metrics.
``silorec replay`` (:mod:`silorec.provenance.replay`) recomputes the merges from the
stored inputs and compares them with the hashes recorded here.

Server-safe: it reads only the run directory (never a domain's interactions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from silorec.provenance.hashing import file_sha256, text_sha256, weights_sha256
from silorec.provenance.merge_inputs import (
    MERGE_INPUTS_DIR,
    MODELS_DIR,
    has_merge_inputs,
    load_npz,
    read_inputs_record,
    saved_index,
)
from silorec.results import load_run
from silorec.results.io import write_json_atomic, write_text_atomic
from silorec.results.markdown import cell, code, fmt_value, md_table
from silorec.results.schema import RunResults

CARD_JSON = "merge-card.json"
CARD_MD = "merge-card.md"
CARD_VERSION = 1
#: The test metrics a card shows per model and domain.
CARD_METRICS = ("recall@10", "ndcg@10")
PRIVACY_PREFIX = "privacy_"
AUDIT_JSON = "audit.json"


class CardError(ValueError):
    """A run (or card) that a merge card cannot be built from or read."""


def build_card(run_dir: Path) -> dict[str, Any]:
    """The merge card of the run in ``run_dir`` as plain JSON data."""
    run_dir = Path(run_dir).resolve()
    results = load_run(run_dir)
    saved = _saved_models(run_dir)
    screened = read_inputs_record(run_dir)["models"] if has_merge_inputs(run_dir) else {}
    roles = {n.domain: n.role for n in results.nodes}
    return {
        "card_version": CARD_VERSION,
        "run": {
            "run_id": results.run_id,
            "run_dir": str(run_dir),
            "scenario_name": results.scenario_name,
            "scenario_sha256": text_sha256(results.scenario_toml),
            "engine": results.engine,
            "status": results.status,
            "seeds": dict(results.seeds),
            "versions": dict(results.versions),
            "started_at": results.started_at,
            "finished_at": results.finished_at,
            "device": results.scenario.get("train", {}).get("device", "auto"),
        },
        "base": {
            "label": "theta0",
            "sha256": saved.get("theta0", {}).get("sha256"),
            **{k: v for k, v in results.base.items() if k in ("init", "seed", "fedavg_rounds")},
        },
        "domains": [
            {
                "domain": node.domain,
                "role": node.role,
                "node_id": node.node_id,
                "status": node.status,
                "upload_sha256": saved.get(f"individual:{node.domain}", {}).get("sha256"),
                "merge_input_sha256": screened.get(node.domain, {}).get("sha256"),
                "bytes_sent": node.bytes_sent,
                "bytes_received": node.bytes_received,
                "privacy": {
                    k[len(PRIVACY_PREFIX) :]: v
                    for k, v in node.info.items()
                    if k.startswith(PRIVACY_PREFIX)
                },  # fmt: skip
            }
            for node in results.nodes
        ],
        "merges": [_merge_entry(info, saved, results) for info in results.merges],
        "models": [
            {
                "label": label,
                "kind": entry["kind"],
                "sha256": entry["sha256"],
                "file": entry["file"],
                "test": _test_metrics(results, label, roles),
            }
            for label, entry in saved.items()
        ],  # fmt: skip
        "audit": _audit_section(run_dir),
        "replayable": has_merge_inputs(run_dir),
        "inputs": str(run_dir / MERGE_INPUTS_DIR) if has_merge_inputs(run_dir) else None,
    }


def write_card(run_dir: Path) -> list[Path]:
    """Build the run's merge card and write both files atomically."""
    card = build_card(run_dir)
    return [
        write_json_atomic(Path(run_dir) / CARD_JSON, card),
        write_text_atomic(Path(run_dir) / CARD_MD, render_card(card)),
    ]


def read_card(path: Path) -> dict[str, Any]:
    """A card from its JSON file, or from the folder (run or export) that holds it."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_JSON
    if not path.is_file():
        raise CardError(f"{path}: no merge card here (expected {CARD_JSON})")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CardError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("card_version") != CARD_VERSION:
        raise CardError(f"{path}: not a silorec merge card of version {CARD_VERSION}")
    return card


def card_for_model(card: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The card of one exported model: the run's card with only that model's merge
    (if it is one) and its own entry."""
    models = [m for m in card["models"] if m["label"] == label]
    if not models:
        raise CardError(f"the run's card has no model labelled {label!r}")
    out = dict(card)
    out["models"] = models
    out["merges"] = [m for m in card["merges"] if m["label"] == label]
    out["exported_model"] = label
    return out


def render_card(card: Mapping[str, Any]) -> str:
    """The card as one Markdown page."""
    run = card["run"]
    lines = [
        f"# Merge card: {run['scenario_name']} / {run['run_id']}",
        "",
        f"- scenario sha256 `{run['scenario_sha256'][:16]}…`; engine `{run['engine']}`; "
        f"status {run['status']}; seeds {_inline(run['seeds'])}",
        f"- versions {_inline(run['versions'])}",
        f"- θ0 ({card['base'].get('init', '?')}) sha256 {_short(card['base']['sha256'])}",
        f"- replay: {'`silorec replay ' + run['run_dir'] + '`' if card['replayable'] else 'not possible (no merge-inputs/ in the run)'}",
        "",
        "## Domains: what each uploaded, its privacy",
        "",
        md_table(
            ["domain", "role", "status", "upload sha256", "merged input sha256", "ε", "δ", "sent"],
            [
                [
                    cell(d["domain"]),
                    d["role"],
                    d["status"],
                    _short(d["upload_sha256"]),
                    _short(d["merge_input_sha256"]),
                    _epsilon(d["privacy"]),
                    _delta(d["privacy"].get("delta")),
                    f"{d['bytes_sent']:,} B",
                ]
                for d in card["domains"]
            ],  # fmt: skip
            ["l", "l", "l", "l", "l", "r", "r", "r"],
        ),
        "",
        "## Merges",
        "",
        md_table(
            ["merge", "method", "parameters", "learned coefficients", "sha256", "mean test R@10"],
            [
                [
                    cell(m["label"]),
                    code(m["method"]),
                    cell(_inline(m["params"])),
                    cell(_inline(m.get("coefficients") or {}) or "—"),
                    _short(m["sha256"]),
                    fmt_value(m.get("mean_merged_test", {}).get("recall@10")),
                ]
                for m in card["merges"]
            ],  # fmt: skip
            ["l", "l", "l", "l", "l", "r"],
        ),
        "",
        "## Audit",
        "",
        f"- verdict: **{card['audit']['verdict']}**"
        + (
            f" (audit.json sha256 {_short(card['audit']['report_sha256'])})"
            if card["audit"].get("report_sha256")
            else ""
        ),  # fmt: skip
    ]
    lines += [
        f"- `{name}` sha256 {_short(digest)}" for name, digest in card["audit"]["logs"].items()
    ]
    lines += ["", "## Models and test metrics", ""]
    lines.append(
        md_table(
            ["model", "kind", "sha256", *[f"{d} R@10" for d in _domains(card)]],
            [
                [
                    cell(m["label"]),
                    m["kind"],
                    _short(m["sha256"]),
                    *[fmt_value(m["test"].get(d, {}).get("recall@10")) for d in _domains(card)],
                ]
                for m in card["models"]
            ],  # fmt: skip
            ["l", "l", "l", *["r"] * len(_domains(card))],
        )
    )
    return "\n".join(lines) + "\n"


# -- pieces -------------------------------------------------------------------


def _saved_models(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Label -> kind, file and weights hash of every model the run saved."""
    out: dict[str, dict[str, Any]] = {}
    for entry in saved_index(run_dir):
        weights = load_npz(run_dir / MODELS_DIR / entry["file"])
        out[entry["label"]] = {"kind": entry["kind"], "file": f"{MODELS_DIR}/{entry['file']}",
                               "sha256": weights_sha256(weights)}  # fmt: skip
    return out


def _merge_entry(
    info: Mapping[str, Any], saved: Mapping[str, Mapping[str, Any]], results: RunResults
) -> dict[str, Any]:
    diagnostics = info.get("diagnostics") or {}
    coefficients = {k: v for k, v in diagnostics.items() if k in ("lambdas", "lambda", "scales")}
    roles = {n.domain: n.role for n in results.nodes}
    test = _test_metrics(results, info["label"], roles)
    merged = [d for d, role in roles.items() if role == "merged" and d in test]
    mean = {m: float(np.mean([test[d][m] for d in merged])) for m in CARD_METRICS
            if merged and all(m in test[d] for d in merged)}  # fmt: skip
    return {
        "label": info["label"],
        "method": info["method"],
        "params": dict(info.get("params") or {}),
        "learned": bool(info.get("learned")),
        "domains": list(info.get("domains") or []),
        "seed": results.seeds.get("scenario"),
        "coefficients": coefficients,
        "clip_scale": dict(info.get("clip_scale") or {}),
        "sha256": saved.get(info["label"], {}).get("sha256"),
        "seconds": info.get("seconds"),
        "mean_merged_test": mean,
    }


def _test_metrics(
    results: RunResults, label: str, roles: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    return {
        row.domain: {m: row.metrics[m] for m in CARD_METRICS if m in row.metrics}
        for row in results.rows
        if row.model == label and row.split == "test" and row.domain in roles
    }


def _audit_section(run_dir: Path) -> dict[str, Any]:
    """Hashes of every audit log in the run; the verdict of ``silorec audit`` when it
    has been run (it needs the nodes' detectors, so the server cannot give one)."""
    logs = {str(p.relative_to(run_dir)): file_sha256(p)
            for p in sorted((run_dir / "audit").glob("*.jsonl"))}  # fmt: skip
    report = run_dir / AUDIT_JSON
    if not report.is_file():
        return {"verdict": "not audited (run `silorec audit RUN`)", "logs": logs}
    verdict = json.loads(report.read_text()).get("verdict", "unknown")
    return {"verdict": verdict, "report_sha256": file_sha256(report), "logs": logs}


def _domains(card: Mapping[str, Any]) -> list[str]:
    return [d["domain"] for d in card["domains"]]


def _short(digest: str | None) -> str:
    return f"`{digest[:12]}`" if digest else "—"


def _inline(mapping: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_compact(v)}" for k, v in mapping.items())


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + _inline(value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return str(value)


def _epsilon(privacy: Mapping[str, Any]) -> str:
    if privacy.get("epsilon_unbounded"):
        return "∞ (no DP)"
    return fmt_value(privacy.get("epsilon"))


def _delta(value: Any) -> str:
    """δ is small (1e-5): significant digits, not four decimals."""
    return "—" if value is None else f"{float(value):.3g}"
