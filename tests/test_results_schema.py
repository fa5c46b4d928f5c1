"""silorec.results.schema and .analysis: the result model, its frames, the comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from results_example import MERGES, TEST_RECALL10, example_results

from silorec.results import (
    ID_COLUMNS,
    MEAN_MERGED,
    MEAN_UNSEEN,
    NodeRecord,
    ResultRow,
    RunResults,
    gain_share,
    merge_vs_individual,
    ratio,
    unseen_transfer,
)
from silorec.results.analysis import MEAN_ROW

METRICS = [
    "recall@5",
    "recall@10",
    "recall@20",
    "recall@50",
    "ndcg@5",
    "ndcg@10",
    "ndcg@20",
    "ndcg@50",
    "mrr",
]


def _row(**kw: object) -> ResultRow:
    base = {
        "model": "theta0",
        "kind": "base",
        "domain": "a",
        "domain_role": "merged",
        "split": "test",
        "n_users": 3,
        "metrics": {"recall@10": 0.5},
    }
    base.update(kw)
    return ResultRow.model_validate(base)


def test_example_has_the_shape_the_brief_asks_for() -> None:
    r = example_results()
    assert r.domains("merged") == ["beauty", "sports", "toys"]
    assert r.domains("unseen") == ["office"]
    assert r.models() == [
        "theta0",
        "individual:beauty",
        "individual:sports",
        "individual:toys",
        *MERGES,
    ]
    assert r.splits() == ["valid", "test"]
    assert r.metric_names() == METRICS
    assert len(r.rows) == 6 * 4 * 2
    assert r.base_model() == "theta0"
    assert r.individual_models() == {
        "beauty": "individual:beauty",
        "sports": "individual:sports",
        "toys": "individual:toys",
    }


def test_json_round_trip_gives_an_equal_object() -> None:
    r = example_results(failed_domain="sports")
    again = RunResults.model_validate_json(r.model_dump_json())
    assert again == r
    assert again.rows[0].metrics == r.rows[0].metrics
    assert list(again.timings) == list(r.timings)  # phase order survives


def test_free_dicts_accept_numpy_and_tuples_and_still_round_trip() -> None:
    node = NodeRecord(
        domain="a",
        role="merged",
        info={"n_users": np.int64(7), "train_seconds": np.float32(1.5), "shape": (2, 3)},
    )
    assert node.info == {"n_users": 7, "train_seconds": 1.5, "shape": [2, 3]}
    assert type(node.info["n_users"]) is int
    r = RunResults(
        run_id="r",
        scenario_name="s",
        nodes=[node],
        base={"seed": np.int32(3)},
        merges=[{"label": "average", "params": {"lambda": np.float64(0.3)}}],
        rows=[_row(metrics={"recall@10": np.float32(0.25)})],
    )
    assert RunResults.model_validate_json(r.model_dump_json()) == r


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "individual"}, "source"),
        ({"source": "b"}, "only individual"),
        ({"metrics": {"recall@10": float("nan")}}, "finite"),
        ({"split": "train"}, "split"),
        ({"n_users": -1}, "n_users"),
        ({"domain_role": "other"}, "domain_role"),
    ],
)
def test_bad_rows_are_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _row(**change)


def test_run_level_consistency_is_checked() -> None:
    with pytest.raises(ValidationError, match="duplicate result row"):
        RunResults(run_id="r", scenario_name="s", rows=[_row(), _row()])
    with pytest.raises(ValidationError, match="both 'merged' and 'unseen'"):
        RunResults(
            run_id="r",
            scenario_name="s",
            rows=[_row(), _row(model="m", kind="merge", domain_role="unseen")],
        )
    with pytest.raises(ValidationError, match="kinds"):
        RunResults(run_id="r", scenario_name="s", rows=[_row(), _row(split="valid", kind="merge")])
    with pytest.raises(ValidationError, match="ISO 8601"):
        RunResults(run_id="r", scenario_name="s", started_at="yesterday")
    with pytest.raises(ValidationError, match="extra"):
        RunResults.model_validate({"run_id": "r", "scenario_name": "s", "typo": 1})


def test_table_is_models_by_domains_with_group_means() -> None:
    r = example_results()
    t = r.table("test", "recall@10")
    assert list(t.columns) == ["beauty", "sports", "toys", "office", MEAN_MERGED, MEAN_UNSEEN]
    assert list(t.index) == r.models()
    for model, by_domain in TEST_RECALL10.items():
        for domain, value in by_domain.items():
            assert t.at[model, domain] == pytest.approx(value)
    assert t.at["theta0", MEAN_MERGED] == pytest.approx((0.04 + 0.03 + 0.035) / 3)
    assert t.at["average", MEAN_UNSEEN] == pytest.approx(0.026)
    valid = r.table("valid", "ndcg@10")
    assert valid.at["theta0", "beauty"] == pytest.approx(0.04 * 1.1 * 0.5)


def test_table_means_skip_a_failed_domain_but_not_a_single_missing_cell() -> None:
    r = example_results(failed_domain="sports")
    t = r.table()
    assert t["sports"].isna().all()
    # sports is left out for every model alike
    assert t.at["theta0", MEAN_MERGED] == pytest.approx((0.04 + 0.035) / 2)
    # one model missing one cell gets no mean (it would not be comparable)
    r.rows = [x for x in r.rows if not (x.model == "average" and x.domain == "toys")]
    t = r.table()
    assert math.isnan(t.at["average", MEAN_MERGED])
    assert t.at["theta0", MEAN_MERGED] == pytest.approx((0.04 + 0.035) / 2)


def test_table_without_unseen_domains_has_no_unseen_mean() -> None:
    r = RunResults(run_id="r", scenario_name="s", rows=[_row()])
    assert list(r.table().columns) == ["a", MEAN_MERGED]
    assert list(r.table(means=False).columns) == ["a"]


def test_tidy_frame() -> None:
    r = example_results()
    f = r.tidy_frame()
    assert list(f.columns) == [*ID_COLUMNS, *METRICS]
    assert len(f) == 48
    assert f[["model", "domain", "split"]].duplicated().sum() == 0
    first = f.iloc[0]
    assert (first["model"], first["domain"], first["split"]) == ("theta0", "beauty", "valid")
    ind = f[f["kind"] == "individual"]
    assert set(ind["source"]) == {"beauty", "sports", "toys"}
    assert f[f["kind"] != "individual"]["source"].isna().all()
    assert str(f["recall@10"].dtype) == "float64"


def test_cross_domain_matrix() -> None:
    m = example_results().cross_domain_matrix()
    assert list(m.index) == ["beauty", "sports", "toys"]
    assert list(m.columns) == ["beauty", "sports", "toys", "office"]
    assert m.at["sports", "office"] == pytest.approx(0.028)
    assert m.at["toys", "toys"] == pytest.approx(0.075)


def test_gain_share_and_ratio_by_hand() -> None:
    # task_arithmetic on sports: (0.045 - 0.030) / (0.070 - 0.030) = 0.375
    assert gain_share(0.045, 0.070, 0.030) == pytest.approx(0.375)
    assert ratio(0.045, 0.070) == pytest.approx(0.045 / 0.070)
    assert math.isnan(gain_share(0.05, 0.04, 0.04))  # θ0 == individual: nothing to keep
    assert math.isnan(gain_share(0.05, 0.03, 0.04))  # fine-tuning hurt: undefined
    assert math.isnan(ratio(0.05, 0.0))
    assert gain_share(0.02, 0.07, 0.03) == pytest.approx(-0.25)  # worse than θ0


def test_merge_vs_individual_frame() -> None:
    f = merge_vs_individual(example_results(), "test", "recall@10")
    assert len(f) == 2 * (3 + 1)
    ta = f[f["merge"] == "task_arithmetic(lambda=0.3)"].set_index("domain")
    assert ta.at["sports", "gain_share"] == pytest.approx(0.375)
    assert ta.at["beauty", "gain_share"] == pytest.approx(0.75)
    assert ta.at["beauty", "ratio"] == pytest.approx(0.875)
    # the mean row is a ratio of means: (0.06 - 0.035) / (0.075 - 0.035) = 0.625
    assert ta.at[MEAN_ROW, "gain_share"] == pytest.approx(0.625)
    assert ta.at[MEAN_ROW, "ratio"] == pytest.approx(0.06 / 0.075)
    assert ta.at[MEAN_ROW, "n_domains"] == 3


def test_unseen_transfer_frame() -> None:
    f = unseen_transfer(example_results(), "test", "recall@10").set_index("domain")
    assert f.at["office", "best_source"] == "sports"
    assert f.at["office", "best_individual"] == pytest.approx(0.028)
    assert f.at["office", "average"] == pytest.approx(0.026)
    assert f.at["office", "theta0"] == pytest.approx(0.02)
