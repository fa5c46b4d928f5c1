"""silorec.results.report: the Markdown report holds the numbers it should."""

from __future__ import annotations

import re

import pytest
from results_example import example_results

from silorec.results import Failure, NodeRecord, ResultRow, RunResults, render_report
from silorec.results.report import describe_base


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped, header first, separator dropped) of the first
    Markdown table after the line ``heading``."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def _by_first_cell(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    header, body = rows[0], rows[1:]
    return {r[0]: dict(zip(header, r, strict=True)) for r in body}


@pytest.fixture(scope="module")
def report() -> str:
    return render_report(example_results())


def test_header(report: str) -> None:
    assert report.startswith("# silorec run `example-20250101-120000`\n")
    assert "- **Status:** **completed**" in report
    assert "- **Scenario:** `example`" in report
    assert "- **Engine:** in-process" in report
    assert "2025-01-01 12:00:00 UTC" in report
    assert "- **Duration:** 5 min 30 s" in report
    assert "Hand-made example: three merged Amazon-like domains, one unseen." in report
    assert "torch 2.13.0" in report and "flwr 1.41.0" in report
    assert "seeded random initialisation (seed 0)" in report
    assert "merged: beauty, sports, toys; unseen (zero-shot): office" in report
    assert "This run" not in report  # no failure banner


def test_main_table_numbers_and_bold_best_merge(report: str) -> None:
    rows = _table_after(report, "### Recall@10 (test)")
    assert rows[0] == [
        "model",
        "kind",
        "beauty",
        "sports",
        "toys",
        "office (unseen)",
        "*mean (merged)*",
        "*mean (unseen)*",
    ]
    t = _by_first_cell(rows)
    assert list(t) == [
        "`theta0`",
        "`individual:beauty`",
        "`individual:sports`",
        "`individual:toys`",
        "`average`",
        "`task_arithmetic(lambda=0.3)`",
    ]
    ta, avg = t["`task_arithmetic(lambda=0.3)`"], t["`average`"]
    # best merge per column in bold: task arithmetic on beauty/toys/mean, average on sports/office
    assert ta["beauty"] == "**0.0700**" and avg["beauty"] == "0.0600"
    assert avg["sports"] == "**0.0500**" and ta["sports"] == "0.0450"
    assert ta["toys"] == "**0.0650**"
    assert avg["office (unseen)"] == "**0.0260**"
    assert ta["*mean (merged)*"] == "**0.0600**"
    assert avg["*mean (unseen)*"] == "**0.0260**"
    # never bold outside the merges, even where an individual model is best
    assert t["`individual:beauty`"]["beauty"] == "0.0800"
    assert t["`theta0`"]["*mean (merged)*"] == "0.0350"
    ndcg = _by_first_cell(_table_after(report, "### NDCG@10 (test)"))
    assert ndcg["`task_arithmetic(lambda=0.3)`"]["beauty"] == "**0.0350**"


def test_cross_domain_matrix(report: str) -> None:
    t = _by_first_cell(_table_after(report, "## Cross-domain matrix (Recall@10, test)"))
    assert t["beauty"]["beauty"] == "**0.0800**"  # in-domain in bold
    assert t["sports"]["office (unseen)"] == "0.0280"
    assert t["toys"]["sports"] == "0.0310"
    assert t["*θ0* (`theta0`)"]["toys"] == "0.0350"


def test_gain_share_computed_by_hand(report: str) -> None:
    rows = _table_after(report, "## Merges against the individual models (test)")
    header = rows[0]
    assert header == [
        "merge",
        "domain",
        "merge",
        "individual",
        "θ0",
        "merge ÷ individual",
        "gain kept",
    ]
    ta = {r[1]: r for r in rows[1:] if r[0] == "`task_arithmetic(lambda=0.3)`"}
    # sports: (0.045 - 0.030) / (0.070 - 0.030) = 0.375; ratio 0.045 / 0.070 = 0.643
    assert ta["sports"][2:] == ["0.0450", "0.0700", "0.0300", "0.643", "37.5 %"]
    # beauty: (0.07 - 0.04) / (0.08 - 0.04) = 0.75; ratio 0.875
    assert ta["beauty"][5:] == ["0.875", "75.0 %"]
    # mean over merged domains: (0.060 - 0.035) / (0.075 - 0.035) = 0.625; 0.06/0.075 = 0.8
    assert ta["*mean (merged)*"][2:] == ["0.0600", "0.0750", "0.0350", "0.800", "62.5 %"]
    avg = {r[1]: r for r in rows[1:] if r[0] == "`average`"}
    assert avg["toys"][6] == "50.0 %"


def test_unseen_section(report: str) -> None:
    t = _by_first_cell(_table_after(report, "## Unseen domains: zero-shot transfer (test)"))
    office = t["office"]
    assert office["θ0"] == "0.0200"
    assert office["best single source"] == "0.0280 (sports)"
    assert office["`average`"] == "0.0260 (-0.0020)"
    assert office["`task_arithmetic(lambda=0.3)`"] == "0.0240 (-0.0040)"


def test_full_metrics_nodes_merges_timings(report: str) -> None:
    assert "<summary>valid split (24 rows)</summary>" in report
    assert "<summary>test split (24 rows)</summary>" in report
    full = _table_after(report, "<summary>test split (24 rows)</summary>")
    assert full[0][:4] == ["model", "kind", "domain", "users"]
    assert full[0][4:] == [
        "Recall@5",
        "Recall@10",
        "Recall@20",
        "Recall@50",
        "NDCG@5",
        "NDCG@10",
        "NDCG@20",
        "NDCG@50",
        "MRR",
    ]
    assert ["`average`", "merge", "office", "600"] == full[20][
        :4
    ]  # header, 16 rows of θ0 and individuals, then `average`
    nodes = _by_first_cell(_table_after(report, "## Nodes"))
    assert nodes["beauty"]["status"] == "ok"
    assert nodes["beauty"]["users"] == "1,200"
    assert nodes["beauty"]["sent"] == "3.6 MiB"  # 3,750,000 bytes
    assert nodes["beauty"]["train time"] == "40.0 s"
    assert nodes["office"]["train time"] == "—"
    merges = _by_first_cell(_table_after(report, "## Merges"))
    assert merges["`task_arithmetic(lambda=0.3)`"]["parameters"] == "lambda=0.3"
    timings = _by_first_cell(_table_after(report, "## Timings"))
    assert timings["train"]["time"] == "3 min 00 s"
    assert timings["*wall clock (started → finished)*"]["time"] == "5 min 30 s"
    assert "## Failures\n\nNone." in report
    assert '```toml\nname = "example"' in report


def test_failed_node_shows_dashes_and_the_failure() -> None:
    r = example_results(failed_domain="sports")
    r.status = "failed"
    text = render_report(r)
    assert "> **This run failed.**" in text
    t = _by_first_cell(_table_after(text, "### Recall@10 (test)"))
    assert all(row["sports"] == "—" for row in t.values())
    assert "`individual:sports`" not in t
    # means over the remaining merged domains: (0.04 + 0.035) / 2
    assert t["`theta0`"]["*mean (merged)*"] == "0.0375"
    failures = _table_after(text, "## Failures")
    assert failures[0] == ["phase", "domain", "node", "reason"]
    assert failures[1] == [
        "evaluate",
        "sports",
        "1001",
        "node stopped replying during evaluation (timeout after 1800 s)",
    ]
    assert _by_first_cell(_table_after(text, "## Nodes"))["sports"]["status"] == "**failed**"
    gains = _table_after(text, "## Merges against the individual models (test)")
    sports = [r for r in gains if r[1] == "sports"]
    assert sports and all(r[2:] == ["—"] * 5 for r in sports)
    assert any(r[1] == "*mean (merged)* (2 of 3)" for r in gains)


def _tiny(theta0: float, individual: float, merge: float) -> RunResults:
    def row(model: str, kind: str, value: float, source: str | None = None) -> ResultRow:
        return ResultRow(
            model=model,
            kind=kind,
            source=source,
            domain="a",
            domain_role="merged",
            split="test",
            n_users=10,
            metrics={"recall@10": value, "ndcg@10": value / 2},
        )

    return RunResults(
        run_id="tiny",
        scenario_name="tiny",
        rows=[
            row("theta0", "base", theta0),
            row("individual:a", "individual", individual, "a"),
            row("m", "merge", merge),
        ],
    )


def test_gain_share_is_na_when_theta0_equals_individual() -> None:
    text = render_report(_tiny(0.05, 0.05, 0.06))
    rows = _table_after(text, "## Merges against the individual models (test)")
    assert rows[1][1:] == ["a", "0.0600", "0.0500", "0.0500", "1.200", "n/a"]
    text = render_report(_tiny(0.0, 0.0, 0.0))
    rows = _table_after(text, "## Merges against the individual models (test)")
    assert rows[1][5:] == ["n/a", "n/a"]


def test_empty_and_failed_run_renders() -> None:
    r = RunResults(
        run_id="x",
        scenario_name="nothing",
        status="failed",
        nodes=[NodeRecord(domain="a", role="merged", status="rejected", error="bad | data\nline")],
        failures=[Failure(phase="connect", reason="no node connected within 120 s")],
    )
    text = render_report(r)
    assert "No evaluation results were recorded." in text
    assert "no node connected within 120 s" in text
    assert "bad \\| data line" in text  # pipes escaped, one line
    assert "**rejected**" in text


def test_labels_with_pipes_do_not_break_tables() -> None:
    r = _tiny(0.01, 0.05, 0.03)
    r.rows = [x.model_copy(update={"model": "a|b"}) if x.kind == "merge" else x for x in r.rows]
    text = render_report(r)
    t = _by_first_cell(_table_after(text, "### Recall@10 (test)"))
    assert t["`a\\|b`"]["a"] == "**0.0300**"


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ({"init": "seeded", "seed": 3}, "seeded random initialisation (seed 3), no training"),
        # As the merge server records a FedAvg warm-up: a count and one record per round.
        ({"init": "fedavg", "seed": 0, "fedavg_rounds": 2, "fedavg_local_epochs": 1,
          "rounds": [{"round": 1, "domains": ["toys", "beauty"], "train_sequences": {}},
                     {"round": 2, "domains": ["beauty"], "train_sequences": {}}]},
         "seeded random initialisation (seed 0) followed by 2 FedAvg round(s) of 1 local "
         "epoch(s) over beauty, toys"),
        ({"init": "seeded", "seed": 0, "start": "pretrained all-MiniLM-L6-v2"},
         "pretrained all-MiniLM-L6-v2, no training"),
        ({}, "not recorded"),
    ],
)  # fmt: skip
def test_how_theta0_was_made_reads_as_words(base: dict, expected: str) -> None:
    assert describe_base(base) == expected
