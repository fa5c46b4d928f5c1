"""The one evaluation protocol, used for every model: full ranking over all items of
the domain, leave-one-out targets (validation: second-to-last item, test: last).
Optionally also WeaveRec's sampled protocol on the same scores (the target among
``sampled_negatives`` items the user never interacted with), so numbers can be set
beside that paper's; the full ranking stays the headline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from silorec.data.domain import DomainData, Split
from silorec.evaluation.metrics import ranking_metrics, sampled_metrics, target_ranks
from silorec.models import ItemInputs, Recommender
from silorec.models.inputs import pad_left
from silorec.scenario.schema import EvaluationSettings


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one model on one split of one domain, plus each user's target rank."""

    split: Split
    n_users: int
    metrics: dict[str, float]
    ranks: np.ndarray


def evaluation_users(domain: DomainData, max_users: int | None, seed: int) -> np.ndarray:
    """Users evaluated: all evaluable users, or a seeded sample of ``max_users``.

    The sample depends only on the domain and the seed, so every model is evaluated on
    the same users and results can be compared (and paired) across models.
    """
    users = domain.evaluable_users()
    if max_users is not None and len(users) > max_users:
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    return users


@torch.no_grad()
def evaluate(
    model: Recommender,
    domain: DomainData,
    item_inputs: ItemInputs,
    split: Split,
    settings: EvaluationSettings,
    users: np.ndarray,
    negatives: Sequence[np.ndarray] | None = None,
) -> EvalResult:
    """Rank every item of the domain for each user and score the held-out target.

    ``item_inputs`` are what ``model`` encodes the domain's items from (see
    :mod:`silorec.models`); every item is encoded once. ``negatives``: each user's
    sampled negatives (:func:`draw_negatives`), drawn once by a caller evaluating
    several models; drawn here when the scenario samples and none are given."""
    if len(users) == 0:
        raise ValueError(f"domain '{domain.name}' has no evaluable users")
    was_training = model.training
    model.eval()
    device = item_inputs.device
    try:
        item_repr = model.encode_items(item_inputs)
        max_len = model.settings.max_len
        cases = [domain.eval_case(int(u), split) for u in users]
        # Users of similar length share a batch, trimmed to its longest input (most
        # inputs are far shorter than max_len); ranks go back to the users' order.
        widths = np.minimum([len(history) for history, _ in cases], max_len)
        order = np.argsort(widths, kind="stable")
        ranks = np.empty(len(users), dtype=np.int64)
        if negatives is None and settings.sampled_negatives:
            negatives = draw_negatives(domain, users, split, settings)
        sampled = np.empty(len(users), dtype=np.int64) if negatives is not None else None
        for start in range(0, len(order), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            width = max(int(widths[rows].max()), 1)
            batch = [cases[r] for r in rows]
            inputs = torch.from_numpy(pad_left([c[0] for c in batch], width)).to(device)
            targets = torch.tensor([c[1] for c in batch], device=device)
            states = model.encode_histories(item_inputs, item_repr, inputs)
            scores = model.scores(states, item_repr)
            excluded = None
            if settings.exclude_history:
                excluded = _history_mask(batch, scores.shape).to(device)
            ranks[rows] = target_ranks(scores, targets, excluded).cpu().numpy()
            if sampled is not None and negatives is not None:
                sampled[rows] = _sampled_ranks(scores, targets, [negatives[r] for r in rows])
    finally:
        model.train(was_training)
    metrics = ranking_metrics(ranks, settings.ks)
    if sampled is not None:
        metrics.update(sampled_metrics(sampled))
    return EvalResult(split, len(users), metrics, ranks)


def draw_negatives(
    domain: DomainData, users: np.ndarray, split: Split, settings: EvaluationSettings
) -> list[np.ndarray] | None:
    """Every user's sampled negatives for ``split`` (None when the scenario does not
    sample), in the order of ``users``."""
    n = settings.sampled_negatives
    if not n:
        return None
    return [sampled_negatives(domain, int(u), split, n, settings.users_seed) for u in users]


def sampled_negatives(domain: DomainData, user: int, split: Split, n: int, seed: int) -> np.ndarray:
    """``n`` items ``user`` never interacted with, drawn without replacement by a
    generator of (seed, split, user) alone: the same for every model and run (fewer
    when the catalogue has fewer such items)."""
    seen = domain.flat_items[domain.offsets[user] : domain.offsets[user + 1]]
    allowed = np.setdiff1d(np.arange(domain.n_items), seen, assume_unique=False)
    rng = np.random.default_rng([seed, 0 if split == "valid" else 1, user])
    return rng.choice(allowed, size=min(n, len(allowed)), replace=False)


def _sampled_ranks(
    scores: torch.Tensor, targets: torch.Tensor, negatives: list[np.ndarray]
) -> np.ndarray:
    """0-based rank of each target among its sampled negatives (ties count against
    it, NaN scores lowest, as in :func:`target_ranks`)."""
    scores = scores.nan_to_num(nan=float("-inf"))
    target_scores = scores.gather(1, targets[:, None])[:, 0]
    out = np.empty(len(negatives), dtype=np.int64)
    for row, items in enumerate(negatives):
        index = torch.from_numpy(items).to(scores.device)
        out[row] = int((scores[row, index] >= target_scores[row]).sum())
    return out


def _history_mask(cases: list[tuple[np.ndarray, int]], shape: torch.Size) -> torch.Tensor:
    """[B, n] True for items in each user's input sequence."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for row, (history, _) in enumerate(cases):
        mask[row, torch.from_numpy(history.astype(np.int64))] = True
    return mask
