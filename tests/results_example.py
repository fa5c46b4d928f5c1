"""A small hand-made :class:`RunResults`, to preview the report and plots and to test them.

Three merged domains (beauty, sports, toys), one unseen domain (office); θ0, the three
individual models, two merges (``average`` and ``task_arithmetic(lambda=0.3)``);
valid and test splits; metrics ``recall@K``/``ndcg@K`` for K in 5, 10, 20, 50 and
``mrr``. The numbers are invented but shaped like a real run. Test Recall@10 is
exactly :data:`TEST_RECALL10`; every other metric is derived from it with fixed
factors (see :func:`metrics_from_recall10`).

For tests only (not part of the library): ``python tests/results_example.py DIR``
writes a run directory from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from silorec.results.schema import (
    BASE_LABEL,
    Failure,
    NodeRecord,
    ResultRow,
    RunResults,
)

MERGED = ("beauty", "sports", "toys")
UNSEEN = ("office",)
MERGES = ("average", "task_arithmetic(lambda=0.3)")
KS = (5, 10, 20, 50)

#: model -> domain -> test Recall@10.
TEST_RECALL10: dict[str, dict[str, float]] = {
    BASE_LABEL: {"beauty": 0.0400, "sports": 0.0300, "toys": 0.0350, "office": 0.0200},
    "individual:beauty": {"beauty": 0.0800, "sports": 0.0320, "toys": 0.0380, "office": 0.0250},
    "individual:sports": {"beauty": 0.0420, "sports": 0.0700, "toys": 0.0360, "office": 0.0280},
    "individual:toys": {"beauty": 0.0410, "sports": 0.0310, "toys": 0.0750, "office": 0.0230},
    "average": {"beauty": 0.0600, "sports": 0.0500, "toys": 0.0550, "office": 0.0260},
    "task_arithmetic(lambda=0.3)": {
        "beauty": 0.0700,
        "sports": 0.0450,
        "toys": 0.0650,
        "office": 0.0240,
    },
}

#: Validation metrics are the test metrics times this factor.
VALID_FACTOR = 1.1

N_USERS = {"beauty": 1200, "sports": 900, "toys": 1000, "office": 600}
N_ITEMS = {"beauty": 800, "sports": 700, "toys": 750, "office": 500}


def metrics_from_recall10(r10: float, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """A plausible full metric dict from Recall@10 (recall grows with K, NDCG@K is
    about half of Recall@K, MRR about a third of Recall@10)."""
    recall_factor = {5: 0.6, 10: 1.0, 20: 1.5, 50: 2.4}
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = round(r10 * recall_factor.get(k, k / 10), 6)
    for k in ks:
        out[f"ndcg@{k}"] = round(r10 * recall_factor.get(k, k / 10) * 0.5, 6)
    out["mrr"] = round(r10 / 3, 6)
    return out


def example_results(failed_domain: str | None = None) -> RunResults:
    """The example run. With ``failed_domain``, that node is recorded as failed during
    evaluation: no row evaluates on it (a merged domain also loses its individual
    model, as if training had failed) and a :class:`Failure` says why. The run itself
    still completes, as a real run does when one node drops out."""
    roles = {**{d: "merged" for d in MERGED}, **{d: "unseen" for d in UNSEEN}}
    rows: list[ResultRow] = []
    for model, by_domain in TEST_RECALL10.items():
        if model == BASE_LABEL:
            kind, source = "base", None
        elif model.startswith("individual:"):
            kind, source = "individual", model.split(":", 1)[1]
        else:
            kind, source = "merge", None
        if failed_domain is not None and source == failed_domain:
            continue
        for domain, r10 in by_domain.items():
            if domain == failed_domain:
                continue
            for split, factor in (("valid", VALID_FACTOR), ("test", 1.0)):
                rows.append(
                    ResultRow(
                        model=model,
                        kind=kind,
                        source=source,
                        domain=domain,
                        domain_role=roles[domain],
                        split=split,
                        n_users=N_USERS[domain],
                        metrics=metrics_from_recall10(round(r10 * factor, 6)),
                    )
                )
    nodes = []
    failures = []
    for i, domain in enumerate((*MERGED, *UNSEEN)):
        failed = domain == failed_domain
        merged = roles[domain] == "merged"
        info: dict[str, object] = {
            "n_users": N_USERS[domain],
            "n_items": N_ITEMS[domain],
            "n_interactions": N_USERS[domain] * 9,
        }
        if merged and not failed:
            info.update({"train_seconds": 40.0 + 7.5 * i, "best_epoch": 5 + i})
        nodes.append(
            NodeRecord(
                domain=domain,
                node_id=1000 + i,
                role=roles[domain],
                status="failed" if failed else "ok",
                error="node stopped replying during evaluation" if failed else None,
                bytes_sent=(3 if merged else 4) * 1_250_000,
                bytes_received=(1_300_000 if merged else 0) + 2_000,
                info=info,
            )
        )
        if failed:
            failures.append(
                Failure(
                    phase="evaluate",
                    domain=domain,
                    node_id=1000 + i,
                    reason="node stopped replying during evaluation (timeout after 1800 s)",
                )
            )
    scenario = {
        "name": "example",
        "description": "Hand-made example: three merged Amazon-like domains, one unseen.",
        "domains": [{"name": d, "unseen": roles[d] == "unseen"} for d in roles],
        "evaluation": {"ks": list(KS), "splits": ["valid", "test"]},
    }
    toml = (
        'name = "example"\n'
        'description = "Hand-made example: three merged Amazon-like domains, one unseen."\n'
    )
    return RunResults(
        run_id="example-20250101-120000",
        scenario_name="example",
        scenario=scenario,
        scenario_toml=toml,
        engine="in-process",
        status="completed",
        versions={"silorec": "0.1.0", "python": "3.11.9", "torch": "2.13.0", "flwr": "1.41.0"},
        seeds={"run": 0, "base": 0, "train": 0},
        started_at="2025-01-01T12:00:00+00:00",
        finished_at="2025-01-01T12:05:30+00:00",
        timings={
            "connect": 1.5,
            "describe": 12.0,
            "base": 0.4,
            "train": 180.25,
            "merge": 2.1,
            "evaluate": 120.0,
        },
        nodes=nodes,
        failures=failures,
        merges=[
            {"label": "average", "method": "average", "params": {}, "seconds": 0.8},
            {
                "label": "task_arithmetic(lambda=0.3)",
                "method": "task_arithmetic",
                "params": {"lambda": 0.3},
                "seconds": 1.3,
            },
        ],
        base={"init": "seeded", "seed": 0},
        rows=rows,
    )


def main(argv: list[str] | None = None) -> int:
    """Write the example run directory to the folder given (default ./example-run)."""
    from silorec.results import write_run

    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0] if args else "example-run")
    for path in write_run(example_results(), run_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
