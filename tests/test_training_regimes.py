"""Local fine-tuning regimes: low-rank deltas (LoRA) and the proximal term."""

from __future__ import annotations

import pytest
import torch

from silorec.models import build_model, get_weights
from silorec.scenario import ModelSettings
from silorec.training.regimes import low_rank_training, proximal_penalty

SETTINGS = ModelSettings(dim=16, layers=1, heads=2, max_len=6, dropout=0.0)


def train_steps(model: torch.nn.Module, steps: int = 20) -> None:
    text = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    sequences = torch.tensor([[1, 2, 3], [4, 5, 6]])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=0.05)
    for _ in range(steps):
        states, items = model(text, sequences)
        loss = -(states[:, -1] @ items.T)[:, 7].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_low_rank_training_changes_linear_weights_by_rank_r_only() -> None:
    model = build_model(SETTINGS, 8, seed=0)
    before = get_weights(model)  # copies
    with low_rank_training(model, rank=2):
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(n.endswith((".down", ".up")) for n in trainable)
        train_steps(model)
    after = get_weights(model)
    assert set(after) == set(before)  # names unchanged once folded
    changed = 0
    for name, value in after.items():
        delta = torch.from_numpy(value - before[name])
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(module, torch.nn.Linear) and name.endswith("weight"):
            assert torch.linalg.matrix_rank(delta, atol=1e-6) <= 2
            changed += int(delta.abs().max() > 0)
        else:
            assert torch.equal(delta, torch.zeros_like(delta)), f"{name} moved"
    assert changed > 0
    assert all(p.requires_grad for p in model.parameters())


def test_low_rank_training_starts_exactly_at_theta0() -> None:
    model = build_model(SETTINGS, 8, seed=0)
    before = get_weights(model)
    with low_rank_training(model, rank=4):
        pass
    for name, value in get_weights(model).items():
        assert (value == before[name]).all(), name


def test_proximal_penalty_is_half_mu_squared_distance() -> None:
    model = build_model(SETTINGS, 8, seed=0)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert float(proximal_penalty(model, anchor, 0.5).detach()) == 0.0
    with torch.no_grad():
        model.final_norm.bias.add_(2.0)  # 16 entries moved by 2: ||d||² = 64
    assert float(proximal_penalty(model, anchor, 0.5).detach()) == pytest.approx(0.25 * 64)


def test_fine_tune_regimes_bound_the_task_vector() -> None:
    """Same data and seed: LoRA changes linear weights by rank ≤ r and nothing else;
    the proximal term keeps the model nearer θ0 than full fine-tuning."""
    import numpy as np
    from factories import make_domain

    from silorec.scenario import EvaluationSettings, TrainSettings
    from silorec.training import fine_tune

    rng = np.random.default_rng(0)
    domain = make_domain([list(rng.integers(0, 12, size=6)) for _ in range(40)], n_items=12)
    text = torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    theta0 = get_weights(build_model(SETTINGS, 8, seed=0))

    def task_vector(regime: str, **extra: float) -> dict:
        model = build_model(SETTINGS, 8, seed=0)
        settings = TrainSettings(epochs=3, batch_size=8, lr=0.01, progress=False,
                                 regime=regime, **extra)  # fmt: skip
        fine_tune(model, domain, text, settings, EvaluationSettings(), early_stopping=False)
        return {n: w - theta0[n] for n, w in get_weights(model).items()}

    full, proximal = task_vector("full"), task_vector("proximal", proximal_mu=5.0)
    lora = task_vector("lora", lora_rank=1)
    norm = lambda tv: sum(float((v**2).sum()) for v in tv.values()) ** 0.5  # noqa: E731
    assert 0 < norm(proximal) < norm(full)
    assert norm(lora) > 0
    for name, delta in lora.items():
        if name.endswith(".weight") and delta.ndim == 2 and name != "recency.weight":
            assert torch.linalg.matrix_rank(torch.from_numpy(delta), atol=1e-6) <= 1, name
        else:
            assert not delta.any(), f"{name} moved under LoRA"
