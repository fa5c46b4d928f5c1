"""Subsampling: hand-checked steps on toys, determinism, holdout rule, real data speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from factories import make_domain

from silorec.data.domain import LOO_HOLDOUT, DomainData
from silorec.data.errors import DataError
from silorec.data.subsample import subsample
from silorec.scenario import Subsample

# Item counts: 0:5, 1:4, 2:3, 3:2, 4:1, 5:1.
TOY = [
    [0, 1, 2, 3],
    [0, 1, 2],
    [0, 1, 4],
    [5, 0],
    [1, 2, 0, 3],
]


def seqs_by_id(d: DomainData) -> dict[str, list[str]]:
    return {d.user_ids[u]: [d.items.ids[i] for i in d.sequence(u)] for u in range(d.n_users)}


def test_no_settings_is_identity() -> None:
    d = make_domain(TOY)
    assert subsample(d, Subsample()) is d


def test_k_core_iterates_until_stable() -> None:
    d = subsample(make_domain(TOY), Subsample(k_core=3))
    # Pass 1 drops u3 (2 items) and items 3, 4, 5 (< 3 interactions); that leaves u2
    # with [0, 1] only, so pass 2 drops u2. Items 0, 1, 2 then have 3 each: stable.
    assert seqs_by_id(d) == {
        "u0": ["i0", "i1", "i2"],
        "u1": ["i0", "i1", "i2"],
        "u4": ["i1", "i2", "i0"],
    }
    assert d.items.ids == ["i0", "i1", "i2"]
    assert d.items.fields["title"] == ["Item 0", "Item 1", "Item 2"]
    assert d.flat_items.max() == 2  # re-indexed 0..m-1
    # u4 lost its published test item (3): its two most recent survivors are the targets.
    assert d.holdout.tolist() == [LOO_HOLDOUT] * 3
    inputs, target = d.eval_case(2, "test")
    assert [d.items.ids[i] for i in inputs] == ["i1", "i2"] and d.items.ids[target] == "i0"


def test_top_items_ties_break_by_index() -> None:
    d = subsample(make_domain(TOY), Subsample(top_items=5))
    assert d.items.ids == ["i0", "i1", "i2", "i3", "i4"]  # i4 and i5 tie at 1: i4 wins
    assert seqs_by_id(d)["u3"] == ["i0"]
    assert d.holdout[d.user_ids.index("u3")] == 0
    d = subsample(make_domain(TOY), Subsample(top_items=2))
    assert d.items.ids == ["i0", "i1"]
    assert seqs_by_id(d) == {
        "u0": ["i0", "i1"],
        "u1": ["i0", "i1"],
        "u2": ["i0", "i1"],
        "u3": ["i0"],
        "u4": ["i1", "i0"],
    }
    assert d.holdout.tolist() == [0] * 5  # nobody has 3 items left


def test_top_items_then_k_core_order() -> None:
    # top_items=3 keeps 0, 1, 2; then 2-core: u3 ([0]) drops.
    d = subsample(make_domain(TOY), Subsample(top_items=3, k_core=2))
    assert seqs_by_id(d) == {
        "u0": ["i0", "i1", "i2"],
        "u1": ["i0", "i1", "i2"],
        "u2": ["i0", "i1"],
        "u4": ["i1", "i2", "i0"],
    }


def test_max_length_keeps_most_recent() -> None:
    d = subsample(make_domain(TOY), Subsample(max_length=3))
    assert seqs_by_id(d)["u0"] == ["i1", "i2", "i3"]
    assert seqs_by_id(d)["u4"] == ["i2", "i0", "i3"]
    assert seqs_by_id(d)["u3"] == ["i5", "i0"]
    assert d.n_items == 6


def test_training_only_users_stay_training_only() -> None:
    seqs = [[0, 1, 2, 3], [0, 1, 2, 3]]
    d = subsample(make_domain(seqs, holdout=[0, LOO_HOLDOUT]), Subsample(max_length=3))
    assert d.holdout.tolist() == [0, LOO_HOLDOUT]


def random_domain(n_users: int = 300, n_items: int = 80, seed: int = 7) -> DomainData:
    rng = np.random.default_rng(seed)
    popularity = rng.zipf(1.5, n_items).astype(float)
    popularity /= popularity.sum()
    seqs = [
        list(rng.choice(n_items, size=rng.integers(1, 15), p=popularity)) for _ in range(n_users)
    ]
    return make_domain(seqs, n_items=n_items)


def test_max_users_is_seeded_and_deterministic() -> None:
    d = random_domain()
    spec = Subsample(max_users=50, seed=3)
    a, b = subsample(d, spec), subsample(random_domain(), spec)
    assert a.n_users == 50
    assert a.user_ids == b.user_ids
    assert np.array_equal(a.flat_items, b.flat_items) and a.items == b.items
    # Exactly numpy.random.default_rng(seed).choice over the users, kept in order.
    expected = np.sort(np.random.default_rng(3).choice(np.arange(300), size=50, replace=False))
    assert a.user_ids == [f"u{u}" for u in expected]
    assert subsample(d, Subsample(max_users=50, seed=4)).user_ids != a.user_ids


def test_full_pipeline_is_deterministic_and_consistent() -> None:
    spec = Subsample(top_items=40, k_core=3, max_users=60, max_length=8, seed=1)
    a = subsample(random_domain(), spec)
    b = subsample(random_domain(), spec)
    assert a.user_ids == b.user_ids and np.array_equal(a.flat_items, b.flat_items)
    assert a.n_users <= 60 and a.n_items <= 40 and a.lengths.max() <= 8
    assert a.lengths.min() >= 3  # k-core users keep >= k after user sampling
    assert set(np.unique(a.flat_items)) == set(range(a.n_items))
    assert np.all((a.holdout == 0) | (a.lengths >= 3))


@pytest.mark.parametrize(
    ("spec", "step"),
    [
        (Subsample(k_core=50), "k_core=50"),
        (Subsample(top_items=1, k_core=6), "k_core=6"),
    ],
)
def test_empty_result_names_the_step(spec: Subsample, step: str) -> None:
    with pytest.raises(
        DataError, match=rf"domain 'toy': subsampling left no interactions after {step}"
    ):
        subsample(make_domain(TOY), spec)


@pytest.mark.shared_data
def test_real_subsample_runs_in_seconds(amazon_dir: Path) -> None:
    from silorec.data.importers.mergerec import load_mergerec

    d = load_mergerec(amazon_dir / "Sports.tar.gz", "sports")
    spec = Subsample(top_items=2000, k_core=5, max_users=6000, seed=0)
    start = time.perf_counter()
    s = subsample(d, spec)
    seconds = time.perf_counter() - start
    assert seconds < 5, f"subsampling took {seconds:.1f} s"
    assert s.n_users == 6000 and s.n_items <= 2000
    assert s.lengths.min() >= 5
    assert np.all(s.holdout == LOO_HOLDOUT)
    again = subsample(d, spec)
    assert again.user_ids == s.user_ids and np.array_equal(again.flat_items, s.flat_items)
