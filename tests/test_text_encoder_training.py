"""Training and evaluating the text-encoder backbone: the sampled softmax, its
examples, that training helps, and the one evaluation protocol against brute force."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from factories import make_domain

from silorec.data.domain import DomainData, ItemCatalogue
from silorec.evaluation.protocol import evaluate, evaluation_users
from silorec.models import PAD, ItemTokens, TextEncoderRec, build_model, catalogue_inputs
from silorec.scenario import EvaluationSettings, ModelSettings, TrainSettings
from silorec.training import fine_tune
from silorec.training.finetune import objective_for
from silorec.training.sampled_softmax import (
    SampledBatch,
    SampledSoftmaxObjective,
    sampled_softmax_loss,
)

WORDS = ["apple", "guitar", "rocket", "pillow", "tiger", "violin",
         "candle", "bicycle", "lemon", "hammer", "ocean", "piano"]  # fmt: skip
SETTINGS = ModelSettings(kind="text-encoder", dim=384, encoder_layers=1, max_len=4,
                         max_item_tokens=8, max_sequence_tokens=32, negatives=8,
                         dropout=0.0)  # fmt: skip


def cycle_domain(n_users: int = 80) -> DomainData:
    """Users walk a fixed cycle over the items (item i is followed by i + 5 mod 12):
    nothing the pretrained encoder knows from the words, everything training sees."""
    rng = np.random.default_rng(0)
    n = len(WORDS)
    starts, lengths = rng.integers(n, size=n_users), rng.integers(4, 8, size=n_users)
    sequences = [
        [(int(start) + 5 * step) % n for step in range(length)]
        for start, length in zip(starts, lengths, strict=True)
    ]
    domain = make_domain(sequences, n_items=n, name="cycle")
    return replace(domain, items=ItemCatalogue(ids=[f"i{i}" for i in range(n)],
                                               fields={"title": WORDS}))  # fmt: skip


def inputs_of(domain: DomainData) -> ItemTokens:
    texts = domain.items.texts(["title"])
    return catalogue_inputs(SETTINGS, np.zeros((len(texts), 4), np.float32), texts)


@pytest.fixture(scope="module")
def model() -> TextEncoderRec:
    return build_model(SETTINGS, text_dim=4, seed=0).eval()


def test_the_sampled_softmax_matches_a_hand_computation(model: TextEncoderRec) -> None:
    domain = cycle_domain()
    items = inputs_of(domain)
    batch = SampledBatch(
        histories=torch.tensor([[PAD, 3, 4], [PAD, PAD, 7], [5, 6, 8]]),
        targets=torch.tensor([1, 1, 2]),
        negatives=torch.tensor([2, 0]),
    )
    with torch.no_grad():
        loss = float(sampled_softmax_loss(model, items, batch))
        item_repr = model.encode_items(items).numpy().astype(float)
        states = model.encode_history_texts(items, batch.histories).numpy().astype(float)
    candidates = [1, 1, 2, 2, 0]  # targets, then negatives
    # Masked: row 0's column 1 and row 1's column 0 (each other's target is their own
    # item), row 2's column 3 (the negative that is its target).
    kept = [[0, 2, 3, 4], [1, 2, 3, 4], [0, 1, 2, 4]]
    expected = 0.0
    for row in range(3):
        logits = [states[row] @ item_repr[candidates[c]] / SETTINGS.temperature for c in kept[row]]
        own = logits[kept[row].index(row)]
        expected += -(own - math.log(sum(math.exp(x) for x in logits)))
    assert loss == pytest.approx(expected / 3, rel=1e-4)


def test_each_epoch_cuts_every_user_once_at_a_seeded_point(model: TextEncoderRec) -> None:
    domain = cycle_domain(n_users=30)
    objective = objective_for(model, domain, inputs_of(domain), batch_size=8)
    assert isinstance(objective, SampledSoftmaxObjective) and objective.n_examples == 30

    def epoch(seed: int) -> list[SampledBatch]:
        return objective.epoch_batches(np.random.default_rng(seed))

    batches = epoch(0)
    assert sum(len(b.targets) for b in batches) == 30 and all(len(b.targets) <= 8 for b in batches)
    training = {tuple(domain.train_sequence(u).tolist()) for u in range(30)}
    for batch in batches:
        assert len(set(batch.negatives.tolist())) == SETTINGS.negatives
        for history, target in zip(batch.histories.tolist(), batch.targets.tolist(), strict=True):
            history = [i for i in history if i != PAD]
            assert 1 <= len(history) <= SETTINGS.max_len
            # The history is the items just before the target in some user's sequence.
            window = (*history, target)
            assert any(window == s[c - len(history) : c + 1] for s in training
                       for c in range(len(history), len(s)))  # fmt: skip
    again, other = epoch(0), epoch(1)
    assert all(torch.equal(a.targets, b.targets) for a, b in zip(batches, again, strict=True))
    assert [b.targets.tolist() for b in batches] != [b.targets.tolist() for b in other]


def test_training_improves_validation_ndcg() -> None:
    domain = cycle_domain()
    items = inputs_of(domain)
    model = build_model(SETTINGS.model_copy(update={"max_len": 8}), text_dim=4, seed=0)
    settings = EvaluationSettings(ks=[1, 10])
    users = evaluation_users(domain, None, 0)
    before = evaluate(model, domain, items, "valid", settings, users).metrics["ndcg@10"]
    train = TrainSettings(epochs=8, batch_size=16, lr=1e-3, progress=False)
    report = fine_tune(model, domain, items, train, settings)
    after = evaluate(model, domain, items, "valid", settings, users).metrics["ndcg@10"]
    assert report.n_train_sequences == 80 and report.best_valid_ndcg10 == pytest.approx(after)
    assert after > before + 0.2, (before, after)


@pytest.mark.parametrize("exclude_history", [False, True])
def test_the_evaluation_protocol_ranks_as_a_brute_force_loop(
    model: TextEncoderRec, exclude_history: bool
) -> None:
    domain = cycle_domain(n_users=20)
    items = inputs_of(domain)
    settings = EvaluationSettings(ks=[1, 5, 10], batch_size=3, exclude_history=exclude_history)
    users = evaluation_users(domain, None, 0)
    result = evaluate(model, domain, items, "test", settings, users)
    with torch.no_grad():
        item_repr = model.encode_items(items)
        for user, rank in zip(users.tolist(), result.ranks.tolist(), strict=True):
            history, target = domain.eval_case(user, "test")
            read = history[-SETTINGS.max_len :].tolist()  # what the model reads
            # One user at a time, its history's texts encoded on their own.
            state = model.encode_history_texts(items, torch.tensor([read]))[0]
            scores = (state @ item_repr.T).tolist()
            ignored = set(history.tolist()) - {target} if exclude_history else set()
            expected = sum(1 for i, s in enumerate(scores)
                           if i != target and i not in ignored and s >= scores[target])  # fmt: skip
            assert rank == expected, user
