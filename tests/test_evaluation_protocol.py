"""The evaluation protocol: full ranking, leave-one-out, against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_domain

from silorec.data.domain import DomainData, Split
from silorec.evaluation import protocol
from silorec.evaluation.metrics import ranking_metrics
from silorec.evaluation.protocol import EvalResult, evaluate, evaluation_users
from silorec.models import TextSeqRec, build_model
from silorec.scenario import EvaluationSettings, ModelSettings

N_ITEMS = 30
TEXT_DIM = 20
MODEL_SETTINGS = ModelSettings(dim=16, layers=1, heads=2, max_len=8, dropout=0.5)

# Lengths from 1 to 14, some beyond max_len (8): inputs are cut to the last 8 items.
# User 3 re-consumes item 3, which is also its test target.
SEQUENCES = [
    [0, 1, 2, 3, 4],
    [5, 6, 7],
    [8],
    [3, 5, 3, 7, 3],
    [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22],
    [22, 23],
    [24, 25, 26, 27, 28, 29, 0, 1, 2, 3],
    [4, 4, 4],
    [1, 12, 29, 17, 3, 8, 25],
    [2, 9, 14, 20, 27, 6, 11, 19, 28],
    [7, 13, 21],
    [16, 26, 5, 15],
]
HOLDOUT = [2, 2, 0, 2, 2, 0, 2, 2, 2, 2, 2, 2]


@pytest.fixture(scope="module")
def domain() -> DomainData:
    return make_domain(SEQUENCES, HOLDOUT, N_ITEMS)


@pytest.fixture
def model() -> TextSeqRec:
    return build_model(MODEL_SETTINGS, TEXT_DIM, seed=3)


@pytest.fixture(scope="module")
def embeddings() -> torch.Tensor:
    return torch.randn(N_ITEMS, TEXT_DIM, generator=torch.Generator().manual_seed(0))


def settings(batch_size: int = 3, exclude_history: bool = False) -> EvaluationSettings:
    return EvaluationSettings(ks=[1, 5, 10], batch_size=batch_size, exclude_history=exclude_history)


@torch.no_grad()
def brute_force_rank(
    model: TextSeqRec,
    embeddings: torch.Tensor,
    sequence: list[int],
    split: Split,
    exclude_history: bool,
) -> int:
    """One user at a time, no padding, counting by hand."""
    model.eval()
    history = sequence[:-2] if split == "valid" else sequence[:-1]
    target = sequence[-2] if split == "valid" else sequence[-1]
    items = model.encode_items(embeddings)
    inputs = torch.tensor([history[-MODEL_SETTINGS.max_len :]])
    state = model.encode_sequences(items, inputs)[0, -1]
    scores = model.scores(state, items).tolist()
    ignored = set(history) - {target} if exclude_history else set()
    return sum(
        1
        for item, score in enumerate(scores)
        if item != target and item not in ignored and score >= scores[target]
    )


@pytest.mark.parametrize("split", ["valid", "test"])
@pytest.mark.parametrize("exclude_history", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 512])
def test_batched_ranks_equal_a_per_user_brute_force(
    model: TextSeqRec,
    domain: DomainData,
    embeddings: torch.Tensor,
    split: Split,
    exclude_history: bool,
    batch_size: int,
) -> None:
    users = domain.evaluable_users()
    result = evaluate(
        model, domain, embeddings, split, settings(batch_size, exclude_history), users
    )
    expected = [
        brute_force_rank(model, embeddings, SEQUENCES[u], split, exclude_history) for u in users
    ]
    assert result.ranks.tolist() == expected
    assert result.ranks.dtype == np.int64


def test_result_fields(model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor) -> None:
    users = domain.evaluable_users()
    result = evaluate(model, domain, embeddings, "test", settings(), users)
    assert isinstance(result, EvalResult)
    assert result.split == "test"
    assert result.n_users == len(users) == 10
    assert result.metrics == ranking_metrics(result.ranks, [1, 5, 10])
    assert list(result.metrics) == [
        "recall@1",
        "ndcg@1",
        "recall@5",
        "ndcg@5",
        "recall@10",
        "ndcg@10",
        "mrr",
    ]


def test_inputs_and_targets_of_each_split(
    model: TextSeqRec, embeddings: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """valid: the training sequence predicts the second-to-last item; test: training
    sequence plus the validation item predicts the last one."""
    one_user = make_domain([[11, 12, 13, 14, 15]], [2], N_ITEMS)
    seen: dict[str, list[list[int]]] = {"inputs": [], "targets": []}
    encode = model.encode_sequences
    rank = protocol.target_ranks

    def spy_encode(items: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        seen["inputs"].append(sequences.tolist())
        return encode(items, sequences)

    def spy_ranks(
        scores: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None = None
    ) -> torch.Tensor:
        seen["targets"].append(targets.tolist())
        return rank(scores, targets, excluded)

    monkeypatch.setattr(model, "encode_sequences", spy_encode)
    monkeypatch.setattr(protocol, "target_ranks", spy_ranks)
    users = np.array([0])
    evaluate(model, one_user, embeddings, "valid", settings(), users)
    evaluate(model, one_user, embeddings, "test", settings(), users)
    assert seen["inputs"] == [[[11, 12, 13]], [[11, 12, 13, 14]]]
    assert seen["targets"] == [[14], [15]]


def test_ranks_follow_the_order_of_the_given_users(
    model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor
) -> None:
    users = np.array([9, 0, 4, 7, 1, 11])  # mixed lengths, not sorted
    result = evaluate(model, domain, embeddings, "test", settings(batch_size=2), users)
    expected = [brute_force_rank(model, embeddings, SEQUENCES[u], "test", False) for u in users]
    assert result.ranks.tolist() == expected
    reversed_result = evaluate(model, domain, embeddings, "test", settings(), users[::-1].copy())
    assert reversed_result.ranks.tolist() == expected[::-1]
    assert result.n_users == 6


def test_excluding_history_only_moves_targets_up(
    model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor
) -> None:
    users = domain.evaluable_users()
    plain = evaluate(model, domain, embeddings, "test", settings(), users).ranks
    excluded = evaluate(model, domain, embeddings, "test", settings(exclude_history=True), users)
    assert np.all(excluded.ranks <= plain)
    assert np.any(excluded.ranks < plain)  # the mask has an effect on this data
    # user 3's target (item 3) is also in its history: it is still ranked
    index = list(users).index(3)
    assert excluded.ranks[index] == brute_force_rank(model, embeddings, SEQUENCES[3], "test", True)


def test_mode_is_restored_and_dropout_is_off_during_evaluation(
    model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor
) -> None:
    users = domain.evaluable_users()
    model.eval()
    reference = evaluate(model, domain, embeddings, "valid", settings(), users).ranks
    assert not model.training
    model.train()  # dropout 0.5 would change the ranks if it stayed on
    ranks = evaluate(model, domain, embeddings, "valid", settings(), users).ranks
    assert model.training
    assert all(m.training for m in model.modules())
    np.testing.assert_array_equal(ranks, reference)


def test_mode_is_restored_when_evaluation_fails(
    model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor
) -> None:
    model.train()
    with pytest.raises(ValueError):
        evaluate(model, domain, embeddings, "valid", settings(), np.array([2]))  # no holdout
    assert model.training


def test_no_users_is_an_error_naming_the_domain(
    model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor
) -> None:
    empty = np.array([], dtype=np.int64)
    with pytest.raises(ValueError, match="domain 'toy' has no evaluable users"):
        evaluate(model, domain, embeddings, "test", settings(), empty)


# -- evaluation_users --------------------------------------------------------------


def test_all_evaluable_users_without_a_cap(domain: DomainData) -> None:
    everyone = [0, 1, 3, 4, 6, 7, 8, 9, 10, 11]
    assert evaluation_users(domain, None, seed=0).tolist() == everyone
    assert evaluation_users(domain, 10, seed=0).tolist() == everyone
    assert evaluation_users(domain, 50, seed=0).tolist() == everyone


def test_sampled_users_are_a_seeded_sorted_subset() -> None:
    many = make_domain([[1, 2, 3]] * 200, [2] * 100 + [0] * 100, N_ITEMS)
    sample = evaluation_users(many, 20, seed=4)
    assert len(sample) == 20 and len(set(sample.tolist())) == 20
    assert set(sample.tolist()) <= set(range(100))  # evaluable users only
    assert np.all(np.diff(sample) > 0)
    np.testing.assert_array_equal(evaluation_users(many, 20, seed=4), sample)
    assert not np.array_equal(evaluation_users(many, 20, seed=5), sample)


# -- WeaveRec's sampled protocol -----------------------------------------------------------


def test_sampled_negatives_are_items_the_user_never_had_and_the_same_every_time(
    domain: DomainData,
) -> None:
    for user in evaluation_users(domain, None, 0):
        seen = set(SEQUENCES[user])
        for split in ("valid", "test"):
            drawn = protocol.sampled_negatives(domain, int(user), split, 10, seed=4)
            assert len(drawn) == len(set(drawn)) == min(10, N_ITEMS - len(seen))
            assert not seen & set(drawn.tolist())
            again = protocol.sampled_negatives(domain, int(user), split, 10, seed=4)
            assert np.array_equal(drawn, again)
    other = protocol.sampled_negatives(domain, 0, "test", 10, seed=5)
    assert not np.array_equal(other, protocol.sampled_negatives(domain, 0, "test", 10, seed=4))


@pytest.mark.parametrize("split", ["valid", "test"])
def test_sampled_metrics_match_a_brute_force_count(
    domain: DomainData, model: TextSeqRec, embeddings: torch.Tensor, split: Split
) -> None:
    config = EvaluationSettings(ks=[10], batch_size=4, sampled_negatives=7, users_seed=2)
    users = evaluation_users(domain, None, 0)
    result = evaluate(model.eval(), domain, embeddings, split, config, users)
    ranks = []
    for user in users:
        history, target = domain.eval_case(int(user), split)
        with torch.no_grad():
            item_repr = model.encode_items(embeddings)
            inputs = torch.tensor([list(history[-MODEL_SETTINGS.max_len :])])
            scores = model.scores(model.encode_histories(embeddings, item_repr, inputs),
                                  item_repr)[0]  # fmt: skip
        negatives = protocol.sampled_negatives(domain, int(user), split, 7, seed=2)
        ranks.append(int((scores[negatives] >= scores[target]).sum()))
    ranks_a = np.asarray(ranks, dtype=np.float64)
    assert result.metrics["sampled_mrr"] == pytest.approx(float((1 / (ranks_a + 1)).mean()))
    assert result.metrics["sampled_ndcg@1"] == pytest.approx(float((ranks_a == 0).mean()))
    assert 0 < result.metrics["sampled_ndcg@5"] <= 1
    assert "sampled_mrr" not in evaluate(model, domain, embeddings, split, settings(),
                                         users).metrics  # fmt: skip
