"""How to read merge results honestly: comparisons against θ0 and the individual models.

A merged model is only interesting relative to two references on each merged domain:
that domain's own fine-tuned model (the ceiling a merge tries to keep) and θ0 (what
every model started from; it can be strong). Two numbers per merge and domain:

- ``ratio`` = merge ÷ individual (in-domain): how much of the individual model's
  performance the merge keeps;
- ``gain_share`` = (merge − θ0) ÷ (individual − θ0): how much of the *fine-tuning
  gain* the merge keeps. 1 means the merge is as good as the domain's own model,
  0 means it is no better than θ0, negative means it is worse than θ0. Undefined
  (NaN) when fine-tuning did not improve over θ0 (individual ≤ θ0).

The summary row of each merge (``domain`` = ``(mean)``) is computed from the means over the merged domains
where merge, individual and θ0 all have a value (a ratio of means), which stays stable
when one domain's gain is tiny.

On unseen domains no individual model is in-domain; the fair comparison is the best
single source model (the best individual model on that domain) against each merge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from silorec.evaluation.paired import PairedSums, paired_t_test
from silorec.results.schema import MEAN_MERGED, RunResults

#: ``domain`` of the summary row of each merge (not a valid domain name, so no clash).
MEAN_ROW = "(mean)"
#: ``domain`` of a paired test pooling the users of all merged domains.
POOLED_ROW = "(merged)"
_EPS = 1e-12


def ratio(merge: float, individual: float) -> float:
    """merge ÷ individual; NaN when individual is 0 or a value is missing."""
    if _missing(merge) or _missing(individual) or abs(individual) < _EPS:
        return math.nan
    return merge / individual


def gain_share(merge: float, individual: float, theta0: float) -> float:
    """(merge − θ0) ÷ (individual − θ0); NaN when individual ≤ θ0 (no gain to keep)
    or a value is missing."""
    if _missing(merge) or _missing(individual) or _missing(theta0):
        return math.nan
    gain = individual - theta0
    if gain <= _EPS:
        return math.nan
    return (merge - theta0) / gain


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def merge_vs_individual(
    results: RunResults, split: str = "test", metric: str = "recall@10"
) -> pd.DataFrame:
    """One row per merge x merged domain, plus a summary row per merge
    whose ``domain`` is :data:`MEAN_ROW`.

    Columns: ``merge``, ``domain``, ``merge_value``, ``individual`` (the domain's own
    model on that domain), ``theta0``, ``ratio``, ``gain_share``, ``n_domains`` (how
    many domains the row covers). Missing values are NaN.
    """
    base = results.base_model()
    individuals = results.individual_models()
    records: list[dict[str, object]] = []
    for merge in results.models("merge"):
        complete: list[tuple[float, float, float]] = []
        for domain in results.domains("merged"):
            m = results.value(merge, domain, split, metric)
            label = individuals.get(domain)
            ind = results.value(label, domain, split, metric) if label else None
            t0 = results.value(base, domain, split, metric) if base else None
            records.append(_record(merge, domain, m, ind, t0, 1))
            if not any(_missing(x) for x in (m, ind, t0)):
                complete.append((m, ind, t0))  # type: ignore[arg-type]
        if complete:
            n = len(complete)
            means = [sum(c[i] for c in complete) / n for i in range(3)]
            records.append(_record(merge, MEAN_ROW, *means, n))
        else:
            records.append(_record(merge, MEAN_ROW, None, None, None, 0))
    columns = [
        "merge",
        "domain",
        "merge_value",
        "individual",
        "theta0",
        "ratio",
        "gain_share",
        "n_domains",
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def _record(
    merge: str,
    domain: str,
    m: float | None,
    ind: float | None,
    t0: float | None,
    n: int,
) -> dict[str, object]:
    nan = math.nan
    m_, ind_, t0_ = (nan if x is None else float(x) for x in (m, ind, t0))
    return {
        "merge": merge,
        "domain": domain,
        "merge_value": m_,
        "individual": ind_,
        "theta0": t0_,
        "ratio": ratio(m_, ind_),
        "gain_share": gain_share(m_, ind_, t0_),
        "n_domains": n,
    }


def unseen_transfer(
    results: RunResults, split: str = "test", metric: str = "recall@10"
) -> pd.DataFrame:
    """One row per unseen domain: ``theta0``, the best single source model
    (``best_source``, ``best_individual``), then one column per merge (its value).

    The best single source is chosen on the validation split (never on test), then
    reported on ``split``."""
    base = results.base_model()
    individuals = results.individual_models()
    merges = results.models("merge")
    records: list[dict[str, object]] = []
    for domain in results.domains("unseen"):
        best_source, best, chosen_on = None, math.nan, -math.inf
        for source, label in individuals.items():
            on_valid = results.value(label, domain, "valid", metric)
            selection = (
                on_valid if on_valid is not None else results.value(label, domain, split, metric)
            )
            if selection is not None and selection > chosen_on:
                value = results.value(label, domain, split, metric)
                best_source, chosen_on = source, selection
                best = math.nan if value is None else value
        t0 = results.value(base, domain, split, metric) if base else None
        rec: dict[str, object] = {
            "domain": domain,
            "theta0": math.nan if t0 is None else t0,
            "best_source": best_source,
            "best_individual": best,
        }
        for merge in merges:
            v = results.value(merge, domain, split, metric)
            rec[merge] = math.nan if v is None else v
        records.append(rec)
    columns = ["domain", "theta0", "best_source", "best_individual", *merges]
    return pd.DataFrame.from_records(records, columns=columns)


def _is_learned(merge: dict[str, object]) -> bool:
    """Whether a merge learned its weights on the server (results written before the
    ``learned`` flag: a learned merge was one that recorded λ)."""
    if "learned" in merge:
        return bool(merge["learned"])
    return bool((merge.get("diagnostics") or {}).get("lambdas"))


def best_training_free_merge(results: RunResults, metric: str = "recall@10") -> str | None:
    """The training-free merge (no learned coefficients) with the best mean over the
    merged domains on the *validation* split: the reference a learned merge must beat,
    chosen without looking at test."""
    learned = {m.get("label") for m in results.merges if _is_learned(m)}
    candidates = [m for m in results.models("merge") if m not in learned]
    if not candidates:
        return None
    table = results.table("valid", metric, models=candidates)
    if MEAN_MERGED not in table:
        return None
    means = table[MEAN_MERGED].dropna()
    return None if means.empty else str(means.idxmax())


def accumulate_paired(
    runs: Iterable[RunResults], reference: str, split: str, metric: str
) -> dict[tuple[str, str], PairedSums]:
    """Paired sums of every other model against ``reference`` on the merged domains of
    ``runs``: keyed by (model, domain) and (model, :data:`POOLED_ROW`), the latter
    pooling all merged domains' users (and every run's, for several seeds)."""
    sums: dict[tuple[str, str], PairedSums] = {}
    for run in runs:
        merged = set(run.domains("merged"))
        for entry in run.paired:
            if (entry["split"], entry["metric"]) != (split, metric) or entry[
                "domain"
            ] not in merged:
                continue
            if reference not in (entry["a"], entry["b"]):
                continue
            sign = 1.0 if entry["a"] != reference else -1.0
            other = entry["a"] if sign > 0 else entry["b"]
            part = PairedSums(int(entry["n"]), sign * float(entry["sum"]), float(entry["sumsq"]))
            for key in ((other, entry["domain"]), (other, POOLED_ROW)):
                sums[key] = part if key not in sums else sums[key] + part
    return sums


def paired_tests(sums: dict[tuple[str, str], PairedSums]) -> pd.DataFrame:
    """A paired t-test per (model, domain): columns model, domain, n, mean_diff, p."""
    records = []
    for (model, domain), s in sums.items():
        test = paired_t_test(s)
        records.append({"model": model, "domain": domain, "n": test.n,
                        "mean_diff": test.mean_diff, "p": test.p})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["model", "domain", "n", "mean_diff", "p"])


def paired_comparisons(
    results: RunResults, reference: str, split: str = "test", metric: str = "recall@10"
) -> pd.DataFrame:
    """Every other model against ``reference`` by paired t-tests over users: one row
    per model and merged domain, plus :data:`POOLED_ROW` pooling the merged domains'
    users. Columns: model, domain, n, mean_diff (model − reference), p."""
    return paired_tests(accumulate_paired([results], reference, split, metric))
