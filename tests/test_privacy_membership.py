"""Membership inference: the AUC, the member/non-member split, and the loss attack on
a model that saw neither group (chance) against one that overfit its members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_domain

from silorec.models import build_model
from silorec.node.privacy import user_losses
from silorec.privacy import loss_attack, membership_split, roc_auc
from silorec.scenario import EvaluationSettings, ModelSettings, TrainSettings
from silorec.training import fine_tune


def test_roc_auc_by_hand() -> None:
    # Pairs (pos, neg): (3,1) 1, (3,2) 1, (2,1) 1, (2,2) 1/2 -> 3.5 / 4.
    assert roc_auc(np.array([3.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.875)
    assert roc_auc(np.array([1.0]), np.array([2.0, 3.0])) == 0.0
    assert roc_auc(np.array([5.0, 5.0]), np.array([5.0])) == 0.5
    with pytest.raises(ValueError, match="at least one score in each group"):
        roc_auc(np.array([1.0]), np.array([]))


def test_the_loss_attack_says_member_for_a_low_loss() -> None:
    audit = loss_attack(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0]))
    assert audit.auc == 1.0 and (audit.n_members, audit.n_non_members) == (3, 2)


def test_membership_split_is_seeded_disjoint_and_complete() -> None:
    candidates = np.arange(3, 103)
    members, non_members = membership_split(candidates, 0.2, seed=7)
    assert len(non_members) == 20 and len(members) == 80
    assert not set(members) & set(non_members)
    np.testing.assert_array_equal(np.sort(np.concatenate([members, non_members])), candidates)
    again = membership_split(candidates, 0.2, seed=7)
    np.testing.assert_array_equal(again[1], non_members)
    assert not np.array_equal(membership_split(candidates, 0.2, seed=8)[1], non_members)
    assert len(membership_split(np.arange(3), 0.01, seed=0)[1]) == 1  # at least one out
    with pytest.raises(ValueError, match="at least 2 users"):
        membership_split(np.arange(1), 0.1, seed=0)


N_ITEMS, TEXT_DIM = 300, 32
MODEL = ModelSettings(dim=32, layers=1, heads=2, max_len=12, dropout=0.0, temperature=0.1)


@pytest.fixture(scope="module")
def random_domain():  # noqa: ANN201 - (DomainData, text embeddings)
    """Users buy random items: there is nothing to generalise, only to memorise."""
    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(0, N_ITEMS, size=10)) for _ in range(200)]
    text = torch.randn(N_ITEMS, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    return make_domain(sequences, n_items=N_ITEMS, name="random"), text


def test_a_model_that_saw_neither_group_is_at_chance(random_domain) -> None:  # noqa: ANN001
    domain, text = random_domain
    members, non_members = membership_split(np.arange(domain.n_users), 0.4, seed=0)
    model = build_model(MODEL, TEXT_DIM, seed=0)
    audit = loss_attack(user_losses(model, domain, text, members, 64),
                        user_losses(model, domain, text, non_members, 64))  # fmt: skip
    assert abs(audit.auc - 0.5) < 0.1


def test_an_overfit_model_gives_its_members_away(random_domain) -> None:  # noqa: ANN001
    domain, text = random_domain
    members, non_members = membership_split(np.arange(domain.n_users), 0.4, seed=0)
    model = build_model(MODEL, TEXT_DIM, seed=0)
    settings = TrainSettings(epochs=40, batch_size=32, lr=1e-2, progress=False)
    fine_tune(model, domain, text, settings, EvaluationSettings(ks=[10]),
              early_stopping=False, users=members)  # fmt: skip
    member_losses = user_losses(model, domain, text, members, 64)
    non_member_losses = user_losses(model, domain, text, non_members, 64)
    assert member_losses.mean() < non_member_losses.mean()
    assert loss_attack(member_losses, non_member_losses).auc > 0.8


def test_user_losses_need_a_training_example_per_user() -> None:
    domain = make_domain([[1, 2, 3, 4, 5], [1, 2, 3]], n_items=6)  # user 1 trains on 1 item
    model = build_model(MODEL, TEXT_DIM, seed=0)
    with pytest.raises(ValueError, match="some users have no training example"):
        user_losses(model, domain, torch.randn(6, TEXT_DIM), np.array([0, 1]), 8)
