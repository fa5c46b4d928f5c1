"""Local fine-tuning: training examples, batching, the loss and the training loop.

The loop is checked on a small learnable domain: items form clusters, every user walks
from cluster c to cluster c+1, and an item's text embedding is its cluster centre plus
noise, so the next cluster can be read from the last item's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest
import torch
from factories import make_domain

from silorec.data.domain import DomainData
from silorec.evaluation.protocol import evaluate, evaluation_users
from silorec.models import PAD, TextSeqRec, build_model, get_weights, set_weights
from silorec.models.inputs import pad_left
from silorec.scenario import EvaluationSettings, ModelSettings, TrainSettings
from silorec.training import FineTuneReport, fine_tune, training_examples
from silorec.training.finetune import length_buckets, next_item_loss

N_CLUSTERS, CLUSTER_SIZE, TEXT_DIM = 8, 8, 16
MODEL = ModelSettings(
    dim=32, layers=1, heads=2, max_len=10, dropout=0.1, temperature=0.1, adaptor="linear"
)
TRAIN = TrainSettings(
    epochs=60, batch_size=32, lr=1e-2, patience=3, max_valid_users=100, seed=0, progress=False
)
EVAL = EvaluationSettings(ks=[10], batch_size=256)


def cluster_walk_domain(n_users: int = 300, seed: int = 0) -> tuple[DomainData, torch.Tensor]:
    """Users step from cluster c to c+1 (mod the number of clusters); texts are
    cluster centre + noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLUSTERS, TEXT_DIM))
    noise = 0.3 * rng.normal(size=(N_CLUSTERS * CLUSTER_SIZE, TEXT_DIM))
    embeddings = np.repeat(centres, CLUSTER_SIZE, axis=0) + noise
    sequences = []
    for _ in range(n_users):
        cluster = int(rng.integers(N_CLUSTERS))
        sequence = []
        for _ in range(int(rng.integers(4, 10))):
            sequence.append(cluster * CLUSTER_SIZE + int(rng.integers(CLUSTER_SIZE)))
            cluster = (cluster + 1) % N_CLUSTERS
        sequences.append(sequence)
    domain = make_domain(sequences, [2] * n_users, N_CLUSTERS * CLUSTER_SIZE, name="walk")
    return domain, torch.tensor(embeddings, dtype=torch.float32)


@pytest.fixture(scope="module")
def walk() -> tuple[DomainData, torch.Tensor]:
    return cluster_walk_domain()


def fresh_model(seed: int = 0) -> TextSeqRec:
    return build_model(MODEL, TEXT_DIM, seed=seed)


def recall10(model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor) -> float:
    """Test Recall@10 over every evaluable user."""
    users = domain.evaluable_users()
    return evaluate(model, domain, embeddings, "test", EVAL, users).metrics["recall@10"]


def valid_ndcg10(model: TextSeqRec, domain: DomainData, embeddings: torch.Tensor) -> float:
    """Validation NDCG@10 on the users fine_tune validates on."""
    users = evaluation_users(domain, TRAIN.max_valid_users, TRAIN.seed)
    return evaluate(model, domain, embeddings, "valid", EVAL, users).metrics["ndcg@10"]


@dataclass(frozen=True)
class TrainedRun:
    start_recall: float
    report: FineTuneReport
    weights: dict[str, np.ndarray]
    recall: float
    valid_ndcg10: float


@pytest.fixture(scope="module")
def trained(walk: tuple[DomainData, torch.Tensor]) -> TrainedRun:
    """One fine-tuning run with early stopping, shared by the tests that inspect it."""
    domain, embeddings = walk
    model = fresh_model()
    start_recall = recall10(model, domain, embeddings)
    report = fine_tune(model, domain, embeddings, TRAIN, EVAL)
    return TrainedRun(
        start_recall,
        report,
        get_weights(model),
        recall10(model, domain, embeddings),
        valid_ndcg10(model, domain, embeddings),
    )


# -- training_examples ----------------------------------------------------------------


def test_training_examples_by_hand() -> None:
    domain = make_domain(
        [
            [0, 1, 2, 3, 4],  # holdout: trains on [0, 1, 2]
            [5, 6, 7],  # holdout: trains on [5] alone -> no example
            [8],  # no holdout, a single item -> no example
            [4, 3, 2, 1],  # no holdout: trains on all of it
        ],
        [2, 2, 0, 0],
        n_items=9,
    )
    inputs, targets = training_examples(domain, max_len=4)
    np.testing.assert_array_equal(inputs, [[PAD, PAD, 0, 1], [PAD, 4, 3, 2]])
    np.testing.assert_array_equal(targets, [[PAD, PAD, 1, 2], [PAD, 3, 2, 1]])
    assert inputs.dtype == targets.dtype == np.int64
    # max_len keeps the most recent max_len + 1 items
    inputs, targets = training_examples(domain, max_len=2)
    np.testing.assert_array_equal(inputs, [[0, 1], [3, 2]])
    np.testing.assert_array_equal(targets, [[1, 2], [2, 1]])


def test_held_out_items_never_reach_training() -> None:
    # items 10+ appear only as validation/test targets
    sequences = [[u % 5, (u + 1) % 5, (u + 2) % 5, 10 + u, 20 + u] for u in range(8)]
    domain = make_domain(sequences, [2] * 8, n_items=30)
    inputs, targets = training_examples(domain, max_len=6)
    assert len(inputs) == 8
    used = set(inputs.ravel().tolist()) | set(targets.ravel().tolist())
    assert used <= {PAD, 0, 1, 2, 3, 4}


def test_no_training_sequence_is_a_clear_error() -> None:
    domain = make_domain([[1, 2, 3], [4], [0, 1, 2]], [2, 0, 2], n_items=5, name="thin")
    assert len(training_examples(domain, MODEL.max_len)[0]) == 0
    with pytest.raises(ValueError, match="domain 'thin' has no training sequence of 2\\+ items"):
        fine_tune(fresh_model(), domain, torch.zeros(5, TEXT_DIM), TRAIN, EVAL)


# -- length_buckets ------------------------------------------------------------------


def test_length_buckets_cover_every_example_once_at_the_width_it_needs() -> None:
    lengths = np.random.default_rng(0).integers(1, 11, size=103)
    buckets = length_buckets(lengths, 16, np.random.default_rng(1))
    everything = np.concatenate([batch for batch, _ in buckets])
    assert sorted(everything.tolist()) == list(range(103))
    assert len(buckets) == 7  # ceil(103 / 16)
    assert sorted(len(batch) for batch, _ in buckets) == [7] + [16] * 6
    for batch, width in buckets:
        assert width == lengths[batch].max()
        assert isinstance(width, int)
    # batches hold similar lengths: sorted by length, they do not overlap
    spans = sorted((lengths[b].min(), lengths[b].max()) for b, _ in buckets)
    assert all(high <= next_low for (_, high), (next_low, _) in pairwise(spans))


def test_length_buckets_are_seeded_and_shuffled() -> None:
    lengths = np.random.default_rng(0).integers(1, 11, size=200)

    def order(seed: int) -> list[list[int]]:
        return [b.tolist() for b, _ in length_buckets(lengths, 8, np.random.default_rng(seed))]

    assert order(3) == order(3)
    assert order(3) != order(4)
    widths = [w for _, w in length_buckets(lengths, 8, np.random.default_rng(3))]
    assert widths != sorted(widths)  # batch order is random, not shortest first


# -- next_item_loss ------------------------------------------------------------------


def test_loss_is_the_mean_cross_entropy_over_real_positions() -> None:
    model = fresh_model()
    model.eval()
    embeddings = torch.randn(12, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([6, 7]), np.array([8, 9, 10, 11])]
    inputs = torch.from_numpy(pad_left([s[:-1] for s in sequences], 4))
    targets = torch.from_numpy(pad_left([s[1:] for s in sequences], 4))
    with torch.no_grad():
        loss = next_item_loss(model, embeddings, inputs, targets)
        states, items = model(embeddings, inputs)
        by_hand = []
        for row in range(3):
            for column in range(4):
                target = int(targets[row, column])
                if target != PAD:
                    log_probs = torch.log_softmax(model.scores(states[row, column], items), -1)
                    by_hand.append(-float(log_probs[target]))
    assert len(by_hand) == 4 + 1 + 3
    assert float(loss) == pytest.approx(np.mean(by_hand), rel=1e-5)


def test_a_chunked_loss_has_the_same_value_and_gradients() -> None:
    """Past the logits budget the full softmax is computed in checkpointed chunks (a
    100,000-item catalogue in bounded memory): the same loss, the same gradients."""
    embeddings = torch.randn(12, TEXT_DIM, generator=torch.Generator().manual_seed(2))
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([6, 7]), np.array([8, 9, 10, 11])]
    inputs = torch.from_numpy(pad_left([s[:-1] for s in sequences], 4))
    targets = torch.from_numpy(pad_left([s[1:] for s in sequences], 4))

    def loss_and_grads(budget: int) -> tuple[float, list[torch.Tensor]]:
        model = fresh_model()
        model.eval()
        loss = next_item_loss(model, embeddings, inputs, targets, logits_budget=budget)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return float(loss.detach()), grads

    whole, whole_grads = loss_and_grads(10**9)
    for budget in (12, 25, 36):  # one, two and three positions per chunk (12 items)
        chunked, chunked_grads = loss_and_grads(budget)
        assert chunked == pytest.approx(whole, rel=1e-6)
        assert len(chunked_grads) == len(whole_grads)
        for a, b in zip(chunked_grads, whole_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # summation order


def test_loss_ignores_padding() -> None:
    model = fresh_model()
    model.eval()
    embeddings = torch.randn(12, TEXT_DIM, generator=torch.Generator().manual_seed(1))
    sequences = [np.array([1, 2, 3, 4, 5]), np.array([6, 7]), np.array([8, 9, 10, 11])]

    def loss_at(width: int) -> float:
        inputs = torch.from_numpy(pad_left([s[:-1] for s in sequences], width))
        targets = torch.from_numpy(pad_left([s[1:] for s in sequences], width))
        with torch.no_grad():
            return float(next_item_loss(model, embeddings, inputs, targets))

    assert loss_at(4) == pytest.approx(loss_at(10), rel=1e-5)
    assert loss_at(4) == pytest.approx(loss_at(7), rel=1e-5)


# -- fine_tune ------------------------------------------------------------------------


def test_fine_tuning_learns_the_cluster_walk(trained: TrainedRun) -> None:
    assert trained.start_recall < 0.3  # 8 clusters of 8: a random model is near 10/64
    assert trained.recall >= 0.8
    assert trained.recall - trained.start_recall >= 0.5
    losses = [record["loss"] for record in trained.report.history]
    assert losses[-1] < losses[0] - 1.0


def test_early_stopping_keeps_the_best_validation_weights(trained: TrainedRun) -> None:
    report = trained.report
    scores = [record["valid_ndcg@10"] for record in report.history]
    assert report.best_epoch >= 1
    assert report.best_valid_ndcg10 == max(scores)
    assert scores.index(max(scores)) + 1 == report.best_epoch  # the first best epoch
    assert trained.valid_ndcg10 == pytest.approx(report.best_valid_ndcg10, abs=1e-12)
    # this run stops early, so the kept weights are not simply the last ones
    assert report.epochs_run < TRAIN.epochs
    assert report.epochs_run == report.best_epoch + TRAIN.patience
    assert report.history[-1]["valid_ndcg@10"] < report.best_valid_ndcg10
    assert [r["epoch"] for r in report.history] == list(range(1, report.epochs_run + 1))


def test_the_starting_weights_are_kept_when_training_only_hurts(
    trained: TrainedRun, walk: tuple[DomainData, torch.Tensor]
) -> None:
    domain, embeddings = walk
    model = fresh_model()
    set_weights(model, trained.weights)
    reckless = TRAIN.model_copy(update={"lr": 1.0, "patience": 2})
    report = fine_tune(model, domain, embeddings, reckless, EVAL)
    assert report.best_epoch == 0
    assert report.epochs_run == 2
    assert report.best_valid_ndcg10 == pytest.approx(trained.valid_ndcg10, abs=1e-12)
    assert all(r["valid_ndcg@10"] < trained.valid_ndcg10 for r in report.history)
    for name, array in get_weights(model).items():
        np.testing.assert_array_equal(array, trained.weights[name])


def test_same_seed_same_weights(walk: tuple[DomainData, torch.Tensor]) -> None:
    domain, embeddings = walk

    def run(seed: int) -> dict[str, np.ndarray]:
        model = fresh_model()
        settings = TRAIN.model_copy(update={"seed": seed})
        fine_tune(model, domain, embeddings, settings, EVAL, epochs=2, early_stopping=False)
        return get_weights(model)

    first, again, other = run(0), run(0), run(1)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[n], other[n]) for n in first)


def test_epochs_override_without_early_stopping(walk: tuple[DomainData, torch.Tensor]) -> None:
    domain, embeddings = walk
    model = fresh_model()
    start = get_weights(model)
    report = fine_tune(model, domain, embeddings, TRAIN, EVAL, epochs=3, early_stopping=False)
    assert report.epochs_run == 3 and report.best_epoch == 3
    assert report.best_valid_ndcg10 is None
    assert report.eval_seconds == 0.0
    assert [set(r) for r in report.history] == [{"epoch", "loss"}] * 3
    assert report.n_train_sequences == 300
    assert any(not np.array_equal(get_weights(model)[n], start[n]) for n in start)
    scalars = report.scalars()
    assert "best_valid_ndcg@10" not in scalars
    assert scalars["epochs_run"] == 3.0 and scalars["n_train_sequences"] == 300.0
    assert scalars["final_train_loss"] == report.history[-1]["loss"]


def test_epochs_override_with_early_stopping(walk: tuple[DomainData, torch.Tensor]) -> None:
    domain, embeddings = walk
    patient = TRAIN.model_copy(update={"patience": 50})
    report = fine_tune(fresh_model(), domain, embeddings, patient, EVAL, epochs=2)
    assert report.epochs_run == 2 and len(report.history) == 2
    assert report.best_valid_ndcg10 is not None
    assert report.scalars()["best_valid_ndcg@10"] == report.best_valid_ndcg10
    assert all("valid_ndcg@10" in r for r in report.history)


def test_a_domain_without_evaluable_users_trains_every_epoch() -> None:
    domain = make_domain([[0, 1, 2, 3], [3, 2, 1], [4, 0]], [0, 0, 0], n_items=5)
    embeddings = torch.randn(5, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    settings = TRAIN.model_copy(update={"epochs": 4, "patience": 1})
    report = fine_tune(fresh_model(), domain, embeddings, settings, EVAL)
    assert report.epochs_run == 4 and report.best_epoch == 4
    assert report.best_valid_ndcg10 is None
    assert report.n_train_sequences == 3
