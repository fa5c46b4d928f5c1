"""``report.md``: a run's results as Markdown a person can read.

:func:`render_report` is pure (results in, text out). Sections, in order: header (status,
scenario, engine, dates, versions, seeds, how θ0 was made), the main tables (test
Recall@10 and NDCG@10 of every model on every domain, best merge per column in bold),
the cross-domain matrix, merges against the individual models (ratio and share of the
fine-tuning gain kept), unseen domains (best single source model against each merge),
full metrics per split, the merges, the nodes, privacy (ε per domain and the
membership-inference AUC, when nodes report them), the failures, the timings and the
scenario file. Missing values show as "—"; undefined ratios as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from silorec.results.analysis import (
    MEAN_ROW,
    POOLED_ROW,
    best_training_free_merge,
    merge_vs_individual,
    paired_comparisons,
    unseen_transfer,
)
from silorec.results.io import BAR_PLOT, MATRIX_PLOT
from silorec.results.markdown import (
    DASH,
    NA,
    cell,
    code,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    fmt_share,
    fmt_time,
    fmt_value,
    is_missing,
    md_table,
)
from silorec.results.schema import (
    INFO_KEYS,
    MEAN_MERGED,
    MEAN_UNSEEN,
    MIA_AUC,
    MIA_MEMBERS,
    MIA_NON_MEMBERS,
    PRIVACY_DELTA,
    PRIVACY_EPSILON,
    PRIVACY_EPSILON_UNBOUNDED,
    PRIVACY_NOISE_MULTIPLIER,
    PRIVACY_RELEASES,
    RunResults,
    metric_display,
)
from silorec.results.weave_report import weave_section

HEADLINE_METRICS = ("recall@10", "ndcg@10")
_TIE = 1e-12
_MAX_REASON = 1000


def _duration(results: RunResults) -> float | None:
    try:
        start = datetime.fromisoformat(results.started_at or "")
        end = datetime.fromisoformat(results.finished_at or "")
        return (end - start).total_seconds()
    except (TypeError, ValueError):
        return None


def describe_base(base: dict[str, Any]) -> str:
    """How θ0 was made, in words."""
    if not base:
        return "not recorded"
    rest = dict(base)
    init = rest.pop("init", None)
    seed = rest.pop("seed", None)
    seed_txt = f" (seed {seed})" if seed is not None else ""
    start = rest.pop("start", None)
    if start is not None and init in ("seeded", "fedavg"):
        start_txt = str(start)
    else:
        start_txt = f"seeded random initialisation{seed_txt}"
    if init == "seeded":
        text = f"{start_txt}, no training"
    elif init == "fedavg":
        # ``rounds``: one record per round (which domains took part); the count is
        # ``fedavg_rounds``.
        records = rest.pop("rounds", None)
        rounds = rest.pop("fedavg_rounds", None)
        if rounds is None and isinstance(records, list):
            rounds = len(records)
        epochs = rest.pop("local_epochs", rest.pop("fedavg_local_epochs", None))
        domains = rest.pop("domains", None)
        if domains is None and isinstance(records, list):
            domains = sorted({d for r in records for d in r.get("domains", [])})
        text = f"{start_txt} followed by "
        text += f"{rounds} FedAvg round(s)" if rounds is not None else "FedAvg"
        if epochs is not None:
            text += f" of {epochs} local epoch(s)"
        if domains:
            text += " over " + ", ".join(str(d) for d in domains)
    elif init is not None:
        text = f"{init}{seed_txt}"
    else:
        text = "" if seed is None else f"seed {seed}"
    extra = ", ".join(f"{k}={v}" for k, v in rest.items())
    return ", ".join(x for x in (text, extra) if x) or "not recorded"


# ---------------------------------------------------------------------------
# Sections.
# ---------------------------------------------------------------------------


def _header(r: RunResults) -> list[str]:
    out = [f"# silorec run `{r.run_id}`", ""]
    if r.status != "completed":
        out += [
            f"> **This run {r.status}.** The results below are what it recorded before "
            "stopping; see [Failures](#failures).",
            "",
        ]
    facts = [
        ("Status", f"**{r.status}**"),
        ("Scenario", code(r.scenario_name)),
        ("Engine", r.engine or DASH),
        ("Started", fmt_time(r.started_at)),
        ("Finished", fmt_time(r.finished_at)),
        ("Duration", fmt_seconds(_duration(r))),
        ("θ0 (base model)", describe_base(r.base)),
        (
            "Domains",
            _domain_summary(r),
        ),
        (
            "Versions",
            ", ".join(f"{k} {v}" for k, v in r.versions.items()) or DASH,
        ),
        ("Seeds", ", ".join(f"{k} {v}" for k, v in r.seeds.items()) or DASH),
    ]
    out += [f"- **{k}:** {v}" for k, v in facts]
    if r.description:
        out += ["", "> " + r.description.strip().replace("\n", "\n> ")]
    return out


def _domain_summary(r: RunResults) -> str:
    merged, unseen = r.domains("merged"), r.domains("unseen")
    text = "merged: " + (", ".join(merged) or "none")
    text += "; unseen (zero-shot): " + (", ".join(unseen) or "none")
    return text


def _headline_split(r: RunResults) -> str | None:
    splits = r.splits()
    if not splits:
        return None
    return "test" if "test" in splits else splits[0]


def _headline_metrics(r: RunResults) -> list[str]:
    names = r.metric_names()
    chosen = [m for m in HEADLINE_METRICS if m in names]
    return chosen or names[:1]


def _domain_header(r: RunResults, column: str) -> str:
    if column in (MEAN_MERGED, MEAN_UNSEEN):
        return f"*{column}*"
    return f"{cell(column)} (unseen)" if column in r.domains("unseen") else cell(column)


def _main_table(r: RunResults, split: str, metric: str) -> str:
    table = r.table(split, metric)
    kinds = r.model_kinds()
    merges = [m for m in table.index if kinds[m] == "merge"]
    best: dict[str, float] = {}
    for col in table.columns:
        vals = [table.at[m, col] for m in merges if not is_missing(table.at[m, col])]
        if vals:
            best[col] = max(vals)
    header = ["model", "kind", *[_domain_header(r, c) for c in table.columns]]
    rows = []
    for model in table.index:
        row = [code(model), kinds[model]]
        for col in table.columns:
            v = table.at[model, col]
            text = fmt_value(v)
            if (
                kinds[model] == "merge"
                and col in best
                and not is_missing(v)
                and v >= best[col] - _TIE
            ):
                text = f"**{text}**"
            row.append(text)
        rows.append(row)
    return md_table(header, rows, ["l", "l", *["r"] * len(table.columns)])


def _results_section(r: RunResults, split: str, plots: Sequence[str]) -> list[str]:
    out = [
        f"## Results ({split} split)",
        "",
        "Every model on every domain. Columns: the merged domains, then the unseen "
        "domains (zero-shot transfer), then the means over each group. "
        "The best merge in each column is in **bold**. "
        f"{DASH} means no value (a failed node or evaluation: see [Failures](#failures)). "
        f"A mean shows {DASH} for a model missing one of the domains it averages.",
    ]
    if not r.models("merge"):
        out[-1] += " This run has no merged model."
    for metric in _headline_metrics(r):
        out += ["", f"### {metric_display(metric)} ({split})", "", _main_table(r, split, metric)]
    bar = [p for p in plots if p.endswith(BAR_PLOT)]
    if bar:
        out += ["", f"![Recall@10 by domain and model]({bar[0]})"]
    return out


def _sampled_note(r: RunResults, matrix: Any) -> str:
    """Say why cells are empty when the evaluation plan sampled the matrix."""
    k = (r.scenario.get("evaluation") or {}).get("cross_domain_models")
    if k is None or not matrix.isna().to_numpy().any():
        return ""
    return (
        f" — : not evaluated: each merged domain evaluates its own model and a seeded "
        f"sample of {k} other domains' (`evaluation.cross_domain_models`); unseen "
        "domains evaluate all of them."
    )


def _matrix_section(r: RunResults, split: str, plots: Sequence[str]) -> list[str]:
    metric = _headline_metrics(r)[0]
    out = [f"## Cross-domain matrix ({metric_display(metric)}, {split})", ""]
    matrix = r.cross_domain_matrix(split, metric)
    if matrix.empty:
        return out + ["No individual (per-domain fine-tuned) model was evaluated."]
    out += [
        "Each domain's own fine-tuned model (rows: trained on) evaluated on every domain "
        "(columns: evaluated on). In-domain cells are in **bold**; θ0 is shown for "
        "reference." + _sampled_note(r, matrix),
        "",
    ]
    header = ["trained on \\ evaluated on", *[_domain_header(r, c) for c in matrix.columns]]
    rows = []
    for source in matrix.index:
        row = [cell(source)]
        for col in matrix.columns:
            text = fmt_value(matrix.at[source, col])
            row.append(f"**{text}**" if col == source and text != DASH else text)
        rows.append(row)
    base = r.base_model()
    if base:
        rows.append(
            [f"*θ0* ({code(base)})"]
            + [fmt_value(r.value(base, c, split, metric)) for c in matrix.columns]
        )
    out.append(md_table(header, rows, ["l", *["r"] * len(matrix.columns)]))
    heat = [p for p in plots if p.endswith(MATRIX_PLOT)]
    if heat:
        out += ["", f"![Cross-domain matrix]({heat[0]})"]
    return out


def _merge_section(r: RunResults, split: str) -> list[str]:
    out = [f"## Merges against the individual models ({split})", ""]
    if not r.models("merge"):
        return out + ["No merged model was evaluated."]
    n_merged = len(r.domains("merged"))
    out += [
        "On each merged domain, a merge is compared with that domain's own fine-tuned "
        "model (*individual*) and with the base model θ0. "
        "**merge ÷ individual** is the share of the individual model's performance the "
        "merge keeps; **gain kept** = (merge − θ0) ÷ (individual − θ0) is the share of "
        "the *fine-tuning gain* it keeps (100 % = as good as the domain's own model, "
        "0 % = no better than θ0, negative = worse than θ0). Read the second one: θ0 "
        "can be strong, and then a high ratio says little. "
        f"{NA}: undefined (the individual model did not beat θ0 there, or is 0). "
        f"The *{MEAN_MERGED}* row is computed from the means over the merged domains that "
        "have all three values (a ratio of means).",
    ]
    for metric in _headline_metrics(r):
        frame = merge_vs_individual(r, split, metric)
        rows = []
        for rec in frame.itertuples(index=False):
            if rec.domain == MEAN_ROW:
                label = f"*{MEAN_MERGED}*"
                if rec.n_domains != n_merged:
                    label += f" ({rec.n_domains} of {n_merged})"
            else:
                label = cell(rec.domain)
            incomplete = any(is_missing(x) for x in (rec.merge_value, rec.individual, rec.theta0))
            rows.append(
                [
                    code(rec.merge),
                    label,
                    fmt_value(rec.merge_value),
                    fmt_value(rec.individual),
                    fmt_value(rec.theta0),
                    DASH if incomplete else fmt_ratio(rec.ratio),
                    DASH if incomplete else fmt_share(rec.gain_share),
                ]
            )
        header = ["merge", "domain", "merge", "individual", "θ0", "merge ÷ individual", "gain kept"]
        out += [
            "",
            f"### {metric_display(metric)} ({split})",
            "",
            md_table(header, rows, ["l", "l", "r", "r", "r", "r", "r"]),
        ]
    return out


def _unseen_section(r: RunResults, split: str) -> list[str]:
    if not r.domains("unseen"):
        return []
    out = [
        f"## Unseen domains: zero-shot transfer ({split})",
        "",
        "No model was trained on these domains. Each merge is compared with the best "
        "single source model there (the individual model that does best on that "
        "domain's validation split, so that nothing is chosen on test); the difference "
        "to it is in brackets.",
    ]
    merges = r.models("merge")
    for metric in _headline_metrics(r):
        frame = unseen_transfer(r, split, metric)
        header = ["domain", "θ0", "best single source", *[code(m) for m in merges]]
        rows = []
        for rec in frame.to_dict("records"):
            best = rec["best_individual"]
            best_txt = fmt_value(best)
            if rec["best_source"] is not None:
                best_txt += f" ({cell(rec['best_source'])})"
            row = [cell(rec["domain"]), fmt_value(rec["theta0"]), best_txt]
            for m in merges:
                v = rec[m]
                text = fmt_value(v)
                if not is_missing(v) and not is_missing(best):
                    text += f" ({float(v) - float(best):+.4f})"
                row.append(text)
            rows.append(row)
        out += [
            "",
            f"### {metric_display(metric)} ({split})",
            "",
            md_table(header, rows, ["l", "r", "r", *["r"] * len(merges)]),
        ]
    return out


def _full_metrics_section(r: RunResults) -> list[str]:
    out = ["## All metrics", ""]
    frame = r.tidy_frame()
    if frame.empty:
        return out + ["No evaluation results were recorded."]
    metrics = r.metric_names()
    out.append("One row per model and domain; users = users evaluated.")
    for split in r.splits():
        part = frame[frame["split"] == split]
        rows = []
        for rec in part.to_dict("records"):
            rows.append(
                [code(rec["model"]), rec["kind"], cell(rec["domain"]), str(rec["n_users"])]
                + [fmt_value(rec[m]) for m in metrics]
            )
        header = ["model", "kind", "domain", "users", *[metric_display(m) for m in metrics]]
        out += [
            "",
            "<details>",
            f"<summary>{split} split ({len(part)} rows)</summary>",
            "",
            md_table(header, rows, ["l", "l", "l", "r", *["r"] * len(metrics)]),
            "",
            "</details>",
        ]
    return out


def _significance_section(r: RunResults, split: str) -> list[str]:
    """Paired t-tests over users of every model against the best training-free merge
    (chosen on validation), per merged domain and pooled; * p < 0.05, ** p < 0.01."""
    reference = best_training_free_merge(r)
    if reference is None or not r.paired:
        return []
    out = [
        f"## Significance ({split})",
        "",
        f"Each model against `{reference}`, the best training-free merge on validation "
        "(mean Recall@10 over the merged domains): the mean per-user difference "
        "(model − reference) and a paired t-test over the same users. "
        r"**\*** p < 0.05, **\*\*** p < 0.01. *(merged)* pools the users of all merged "
        "domains. With about a thousand users per domain, differences of a few per cent "
        "are within noise.",
    ]
    for metric in ("recall@10", "ndcg@10"):
        frame = paired_comparisons(r, reference, split, metric)
        if frame.empty:
            continue
        domains = [d for d in r.domains("merged") if d in set(frame["domain"])] + [POOLED_ROW]
        # One lookup table, not a frame filter per cell: with hundreds of domains and
        # models the filters were most of the time spent writing the report.
        tests = {(m, d): (diff, p) for m, d, diff, p in
                 zip(frame["model"], frame["domain"], frame["mean_diff"], frame["p"], strict=True)}  # fmt: skip
        rows = []
        for model in [m for m in r.models() if m in set(frame["model"])]:
            cells = []
            for domain in domains:
                hit = tests.get((model, domain))
                if hit is None:
                    cells.append(DASH)
                    continue
                diff, p = float(hit[0]) + 0.0, float(hit[1])
                stars = "\\*\\*" if p < 0.01 else "\\*" if p < 0.05 else ""
                cells.append(f"{diff:+.4f}{stars} (p={p:.2g})")
            rows.append([code(model), *cells])
        out += ["", f"### {metric_display(metric)}", "",
                md_table(["model", *domains], rows, ["l", *("r" * len(domains))])]  # fmt: skip
    return out


def _baselines_section(r: RunResults) -> list[str]:
    """How the reference models were made: FedAvg (rounds, bytes moved) and the Joint
    oracle, which pools the domains' data and so breaks isolation."""
    fedavg, joint = r.baselines.get("fedavg"), r.baselines.get("joint")
    if not fedavg and not joint:
        return []
    out = ["## Baselines", ""]
    if fedavg:
        out.append(
            f"- **`fedavg`**: {fedavg.get('rounds')} FedAvg rounds from θ0, "
            f"{fedavg.get('local_epochs')} local epoch(s) per round on every merged domain; "
            f"moved {fmt_bytes(fedavg.get('bytes_sent'))} to the nodes and "
            f"{fmt_bytes(fedavg.get('bytes_received'))} back."
        )
    if joint:
        out.append(
            f"- **`joint (oracle)`**: one model trained on the pooled training data of "
            f"{', '.join(joint.get('domains', []))} ({joint.get('epochs_run')} epochs, best "
            f"{joint.get('best_epoch')}). **It breaks data isolation**: an upper reference "
            "only, run by the in-process engine."
        )
    return out


def _merges_list_section(r: RunResults, plots: Sequence[str] = ()) -> list[str]:
    out = ["## Merges", ""]
    if not r.merges:
        return out + ["No merge was run."]
    rows = []
    for m in r.merges:
        params = m.get("params") or {}
        ptxt = (
            ", ".join(f"{k}={v}" for k, v in params.items())
            if isinstance(params, dict)
            else str(params)
        )
        rows.append(
            [
                code(m.get("label", DASH)),
                cell(m.get("method", DASH)),
                cell(ptxt) or DASH,
                fmt_seconds(m.get("seconds")),
            ]
        )
    out.append(md_table(["label", "method", "parameters", "time"], rows, ["l", "l", "l", "r"]))
    return out + _learned_section(r, plots) + _distilled_section(r)


def _distilled_section(r: RunResults) -> list[str]:
    """What each whole-model distillation did: where it started, its held-out loss
    from the start to the state it returned, its roll-outs and its cost."""
    distilled = [m for m in r.merges if "heldout_curve" in (m.get("diagnostics") or {})
                 and not (m.get("diagnostics") or {}).get("lambdas")]  # fmt: skip
    if not distilled:
        return []
    out = ["", "### Distilled merges", ""]
    for m in distilled:
        diag = m["diagnostics"]
        start = diag.get("start") or {}
        params = ", ".join(f"{k}={v}" for k, v in (start.get("params") or {}).items())
        domains = list(m.get("domains") or [])
        rollouts = diag.get("rollouts") or []
        lengths = diag.get("mean_lengths") or []
        counts = ", ".join(
            f"{d} {n} (mean length {length:.1f})"
            for d, n, length in zip(domains, rollouts, lengths, strict=False)
        )
        if len(rollouts) > len(domains):
            counts += (
                f"; transfer anchor (weight {float(diag.get('anchor') or 0):g}) on the "
                f"pooled catalogue: {rollouts[-1]}"
            )
        out += [
            f"`{m.get('label')}`: every weight trained from `{start.get('method', DASH)}"
            f"{f'({params})' if params else ''}` for {len(diag.get('loss_curve') or [])} steps "
            f"({int(diag.get('trainable_parameters') or 0):,} parameters); held-out KL "
            f"{fmt_value(diag.get('heldout_start'))} → {fmt_value(diag.get('heldout_best'))} "
            f"(state of step {diag.get('best_step')} returned); roll-outs: {counts or DASH} "
            f"({fmt_seconds(diag.get('seconds'))}, of which roll-outs "
            f"{fmt_seconds(diag.get('rollout_seconds'))}).",
            "",
        ]
    return out


def _learned_section(r: RunResults, plots: Sequence[str]) -> list[str]:
    """λ learned by each learned merge (per layer group and domain), its pseudo-users
    and its loss, with the plots."""
    learned = [m for m in r.merges if (m.get("diagnostics") or {}).get("lambdas")]
    if not learned:
        return []
    out = ["", "### Learned merge coefficients", ""]
    for m in learned:
        diag = m["diagnostics"]
        domains = list(m.get("domains") or [])
        curve = diag.get("loss_curve") or []
        counts = ", ".join(
            f"{d} {n}" for d, n in zip(domains, diag.get("pseudo_users") or [], strict=False)
        )
        out += [
            f"`{m.get('label')}`: {diag.get('granularity')}-wise λ from "
            f"{diag.get('init')} task vectors; pseudo-users: {counts or DASH}; "
            f"loss {fmt_value(curve[0]) if curve else DASH} → "
            f"{fmt_value(curve[-1]) if curve else DASH} over {len(curve)} steps "
            f"({fmt_seconds(diag.get('seconds'))}).",
            "",
        ]
        rows = [[cell(group), *(fmt_value(v) for v in values)]
                for group, values in diag["lambdas"].items()]  # fmt: skip
        out += [md_table(["group", *domains], rows, ["l", *("r" * len(domains))]), ""]
    for name in ("merge_lambdas.png", "merge_loss.png"):
        shown = [p for p in plots if p.endswith(name)]
        if shown:
            out += [f"![{name}]({shown[0]})", ""]
    return out


def _nodes_section(r: RunResults) -> list[str]:
    out = ["## Nodes", ""]
    if not r.nodes:
        return out + ["No node record."]
    header = ["domain", "role", "node", "status", *INFO_KEYS.values(), "sent", "received"]
    rows = []
    for n in r.nodes:
        status = n.status if n.status == "ok" else f"**{n.status}**"
        info = []
        for key in INFO_KEYS:
            v = n.info.get(key)
            if key == "train_seconds":
                info.append(fmt_seconds(v))
            elif isinstance(v, int | float) and not isinstance(v, bool):
                info.append(f"{v:,}" if isinstance(v, int) else f"{v:g}")
            else:
                info.append(DASH if v is None else cell(v))
        rows.append(
            [
                cell(n.domain),
                n.role,
                DASH if n.node_id is None else str(n.node_id),
                status,
                *info,
                fmt_bytes(n.bytes_sent),
                fmt_bytes(n.bytes_received),
            ]
        )
    align = ["l", "l", "r", "l", *["r"] * len(INFO_KEYS), "r", "r"]
    out += [
        "Sent = payload bytes from the merge server to the node; received = from the node.",
        "",
        md_table(header, rows, align),
    ]
    errors = [n for n in r.nodes if n.error]
    if errors:
        out += [""] + [f"- {cell(n.domain)}: {cell(_short(n.error or ''))}" for n in errors]
    return out


#: What each privacy mechanism does, for the privacy section's opening line.
_MECHANISMS = {
    "none": "none: uploads carry no noise, so every domain that uploaded has ε = ∞",
    "dp-sgd": "DP-SGD (per-example clipping to norm {max_grad_norm:g}, Gaussian noise, "
    "Poisson sampling; a fixed number of epochs, no early stopping)",
    "gaussian": "Gaussian mechanism on the uploaded task vector (clipped to L2 norm "
    "{clip_norm:g}, so its sensitivity is {sensitivity:g}; noise σ = noise multiplier "
    "x sensitivity)",
}


def _privacy_section(r: RunResults) -> list[str]:
    """ε per domain (its privacy ledger at δ) and the membership-inference AUC."""
    nodes = [n for n in r.nodes if any(k.startswith(("privacy_", "mia_")) for k in n.info)]
    if not nodes:
        return []
    settings = r.scenario.get("privacy", {})
    mechanism = str(settings.get("mechanism", "none"))
    description = _MECHANISMS.get(mechanism, mechanism).format(
        max_grad_norm=settings.get("max_grad_norm", math.nan),
        clip_norm=settings.get("clip_norm", math.nan),
        sensitivity=2 * settings.get("clip_norm", math.nan),
    )
    budget = settings.get("budget_epsilon")
    out = [
        "## Privacy",
        "",
        f"- **Mechanism:** {description}",
        f"- **Budget:** {'none' if budget is None else f'ε ≤ {budget:g} per domain'}",
        "",
        "ε is the total of the domain's privacy ledger: every upload of the domain "
        "(FedAvg rounds and fine-tuning) composed with the RDP accountant, at δ. "
        "Unseen domains never upload (ε = 0). *MIA AUC*: a loss-threshold "
        "membership-inference attack on the domain's last upload, training users "
        f"against held-out users (0.5 = chance). {DASH}: not reported (the node failed "
        "or refused before uploading; see [Failures](#failures)). ε covers the uploaded "
        "weights; counts, timings and evaluation metrics are sent without noise.",
        "",
    ]
    rows = []
    for n in r.nodes:
        info = n.info
        if info.get(PRIVACY_EPSILON_UNBOUNDED):
            eps = "∞"
        else:
            eps = fmt_value(info.get(PRIVACY_EPSILON), 3)
        mia = fmt_value(info.get(MIA_AUC), 3)
        if MIA_AUC in info:
            mia += f" ({info.get(MIA_MEMBERS, 0):.0f} / {info.get(MIA_NON_MEMBERS, 0):.0f})"
        delta = info.get(PRIVACY_DELTA)
        rows.append(
            [
                cell(n.domain),
                n.role,
                eps,
                DASH if is_missing(delta) else f"{float(delta):.2g}",
                fmt_value(info.get(PRIVACY_NOISE_MULTIPLIER), 3),
                fmt_value(info.get(PRIVACY_RELEASES), 0),
                mia,
            ]
        )
    header = ["domain", "role", "ε", "δ", "noise multiplier", "uploads",
              "MIA AUC (members / non-members)"]  # fmt: skip
    return out + [md_table(header, rows, ["l", "l", "r", "r", "r", "r", "r"])]


def _short(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _failures_section(r: RunResults) -> list[str]:
    out = ["## Failures", ""]
    if not r.failures:
        return out + ["None."]
    rows = [
        [
            cell(f.phase),
            cell(f.domain) if f.domain else DASH,
            DASH if f.node_id is None else str(f.node_id),
            cell(_short(f.reason)),
        ]
        for f in r.failures
    ]
    return out + [md_table(["phase", "domain", "node", "reason"], rows, ["l", "l", "r", "l"])]


def _timings_section(r: RunResults) -> list[str]:
    out = ["## Timings", ""]
    if not r.timings:
        return out + ["Not recorded."]
    total = sum(r.timings.values())
    rows = [
        [cell(phase), fmt_seconds(s), f"{100 * s / total:.0f} %" if total > 0 else DASH]
        for phase, s in r.timings.items()
    ]
    rows.append(["*sum of phases*", fmt_seconds(total), ""])
    wall = _duration(r)
    if wall is not None:
        rows.append(["*wall clock (started → finished)*", fmt_seconds(wall), ""])
    return out + [md_table(["phase", "time", "share"], rows, ["l", "r", "r"])]


def _scenario_section(r: RunResults) -> list[str]:
    if not r.scenario_toml.strip():
        return []
    fence = "````" if "```" in r.scenario_toml else "```"
    return [
        "## Scenario file",
        "",
        "<details>",
        f"<summary>{cell(r.scenario_name)}.toml</summary>",
        "",
        f"{fence}toml",
        r.scenario_toml.rstrip("\n"),
        fence,
        "",
        "</details>",
    ]


def render_report(results: RunResults, *, plots: Sequence[str] = ()) -> str:
    """The Markdown report of ``results``. ``plots`` are paths (relative to the report)
    of plot images to embed; a plot is embedded under its section when its file name
    is ``recall10_by_domain.png`` or ``cross_domain_matrix.png``."""
    r = results
    sections: list[list[str]] = [_header(r)]
    split = _headline_split(r)
    if split is None:
        sections.append(["## Results", "", "No evaluation results were recorded."])
    else:
        sections += [
            _results_section(r, split, plots),
            _matrix_section(r, split, plots),
            _merge_section(r, split),
            weave_section(r, split),
            _significance_section(r, split),
            _unseen_section(r, split),
            _full_metrics_section(r),
        ]
    sections += [
        _merges_list_section(r, plots),
        _baselines_section(r),
        _nodes_section(r),
        _privacy_section(r),
        _failures_section(r),
        _timings_section(r),
        _scenario_section(r),
    ]
    text = "\n\n".join("\n".join(s) for s in sections if s)
    return text.rstrip("\n") + "\n"
