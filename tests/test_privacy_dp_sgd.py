"""DP-SGD: exact per-example gradients of the whole model (item adaptor included),
clipping, noise, Poisson sampling and the training loop's step count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_domain

from silorec.models import TextSeqRec, build_model, get_weights
from silorec.privacy.dp_sgd import (
    DpSgdSchedule,
    add_clipped,
    clip_factors,
    noisy_mean,
    per_example_norms,
)
from silorec.scenario import ModelSettings, TrainSettings
from silorec.training.dp_finetune import DpSgdParams, dp_fine_tune, dp_schedule
from silorec.training.finetune import per_example_losses, training_examples
from silorec.training.per_sample import per_example_gradients

TEXT_DIM, N_ITEMS = 12, 30


def small_model(adaptor: str = "linear", dropout: float = 0.0) -> TextSeqRec:
    settings = ModelSettings(dim=16, layers=1, heads=2, max_len=6, dropout=dropout,
                             adaptor=adaptor)  # fmt: skip
    return build_model(settings, TEXT_DIM, seed=0)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Text embeddings and three examples of different lengths (one fully padded but
    for its last position)."""
    text = torch.randn(N_ITEMS, TEXT_DIM, generator=torch.Generator().manual_seed(0))
    inputs = torch.tensor([[-1, -1, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10], [-1, -1, -1, -1, -1, 3]])
    targets = torch.tensor([[-1, -1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [-1, -1, -1, -1, -1, 4]])
    return text, inputs, targets


@pytest.mark.parametrize("adaptor", ["linear", "mlp"])
def test_per_example_gradients_equal_one_backward_pass_per_example(adaptor: str) -> None:
    model = small_model(adaptor)
    text, inputs, targets = batch()
    grads, losses = per_example_gradients(model, text, inputs, targets)
    assert set(grads) == {name for name, _ in model.named_parameters()}
    for i in range(len(inputs)):
        model.zero_grad()
        loss = per_example_losses(model, model.encode_items(text), inputs[i : i + 1],
                                  targets[i : i + 1])[0]  # fmt: skip
        loss.backward()
        assert float(losses[i]) == pytest.approx(float(loss.detach()), rel=1e-5)
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None
            torch.testing.assert_close(grads[name][i], parameter.grad, rtol=1e-4, atol=1e-5)
    # The adaptor's gradients are per example, not shared: they differ between examples.
    adaptor_weight = grads["adaptor.layers.weight" if adaptor == "linear" else
                           "adaptor.layers.0.weight"]  # fmt: skip
    assert not torch.allclose(adaptor_weight[0], adaptor_weight[1])


def test_per_example_losses_average_each_examples_positions() -> None:
    model = small_model()
    text, inputs, targets = batch()
    model.eval()
    losses = per_example_losses(model, model.encode_items(text), inputs, targets)
    states = model.encode_sequences(model.encode_items(text), inputs[2:3])[0, -1]
    logits = model.scores(states, model.encode_items(text))
    by_hand = -torch.log_softmax(logits, dim=-1)[4]
    assert float(losses[2].detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)


def test_clipping_bounds_every_example_and_keeps_small_ones() -> None:
    grads = {"a": torch.tensor([[3.0, 0.0], [0.3, 0.0], [0.0, 0.0]]),
             "b": torch.tensor([[[4.0]], [[0.4]], [[0.0]]])}  # fmt: skip
    norms = per_example_norms(grads)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5, 0.0]))
    factors = clip_factors(norms, max_grad_norm=1.0)
    clipped_norms = norms * factors
    assert torch.all(clipped_norms <= 1.0 + 1e-6)
    assert factors[1] == pytest.approx(1.0) and factors[2] == pytest.approx(1.0)
    total = {"a": torch.zeros(2), "b": torch.zeros(1, 1)}
    add_clipped(total, grads, max_grad_norm=1.0)
    # Example 0 scaled to norm 1 ((0.6, 0.8)), example 1 kept ((0.3, 0.4)), example 2 zero.
    torch.testing.assert_close(total["a"], torch.tensor([0.6 + 0.3, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(total["b"], torch.tensor([[0.8 + 0.4]]), atol=1e-5, rtol=0)


def test_real_per_example_gradients_are_clipped_to_the_norm() -> None:
    model = small_model()
    text, inputs, targets = batch()
    grads, _ = per_example_gradients(model, text, inputs, targets)
    norms = per_example_norms(grads)
    assert torch.all(norms > 0.01)
    clipped = {n: g * clip_factors(norms, 0.01).view(-1, *[1] * (g.dim() - 1))
               for n, g in grads.items()}  # fmt: skip
    torch.testing.assert_close(per_example_norms(clipped), torch.full((3,), 0.01), rtol=1e-4,
                               atol=0)  # fmt: skip


def test_noise_has_standard_deviation_sigma_times_c_over_the_batch() -> None:
    total = {"w": torch.zeros(200_000)}
    noisy = noisy_mean(total, noise_multiplier=1.5, max_grad_norm=2.0, expected_batch_size=4.0,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert float(noisy["w"].std()) == pytest.approx(1.5 * 2.0 / 4.0, rel=0.01)
    assert abs(float(noisy["w"].mean())) < 0.01
    silent = noisy_mean({"w": torch.ones(3)}, noise_multiplier=0.0, max_grad_norm=2.0,
                        expected_batch_size=4.0, generator=torch.Generator())  # fmt: skip
    torch.testing.assert_close(silent["w"], torch.full((3,), 0.25))


def test_schedule_is_poisson_sampling_at_batch_over_n() -> None:
    schedule = DpSgdSchedule(n_examples=1000, batch_size=64)
    assert schedule.sample_rate == pytest.approx(0.064)
    assert schedule.steps_per_epoch == 16 and schedule.expected_batch_size == pytest.approx(64)
    assert schedule.gaussian_steps(1.2, epochs=3).steps == 48
    rng = np.random.default_rng(0)
    sizes = [len(schedule.poisson_sample(rng)) for _ in range(400)]
    assert np.mean(sizes) == pytest.approx(64, rel=0.03)
    assert np.std(sizes) == pytest.approx(np.sqrt(1000 * 0.064 * 0.936), rel=0.15)
    whole = DpSgdSchedule(n_examples=10, batch_size=64)
    assert whole.sample_rate == 1.0 and whole.steps_per_epoch == 1
    assert len(whole.poisson_sample(rng)) == 10


def walk_domain(n_users: int = 40):  # noqa: ANN201 - a DomainData from the factory
    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(0, N_ITEMS, size=int(rng.integers(4, 9))))
                 for _ in range(n_users)]  # fmt: skip
    return make_domain(sequences, n_items=N_ITEMS, name="walk")


def test_full_batch_without_noise_or_clipping_is_adam_on_the_mean_example_loss() -> None:
    """q = 1, σ = 0 and a huge C: one DP-SGD step must be exactly one Adam step on the
    mean per-example loss (this checks sampling, summing and the divisor together)."""
    domain = walk_domain()
    text = torch.randn(N_ITEMS, TEXT_DIM, generator=torch.Generator().manual_seed(1))
    settings = TrainSettings(epochs=1, batch_size=1000, lr=0.01, progress=False, seed=0)
    private = small_model()
    reference = small_model()
    report = dp_fine_tune(private, domain, text, settings, DpSgdParams(0.0, 1e6), epochs=1,
                          noise_generator=torch.Generator().manual_seed(0))  # fmt: skip
    inputs, targets = (torch.from_numpy(a) for a in training_examples(domain, 6))
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    loss = per_example_losses(reference, reference.encode_items(text), inputs, targets).mean()
    loss.backward()
    # The attention key bias has no gradient in exact arithmetic (softmax ignores a
    # shift); Adam's first step turns its rounding noise into +-lr, so it is skipped.
    vanishing = {n for n, p in reference.named_parameters() if float(p.grad.abs().max()) < 1e-6}
    assert vanishing == {"blocks.0.attention.key.bias"}
    optimizer.step()
    for name, value in get_weights(reference).items():
        if name not in vanishing:
            np.testing.assert_allclose(get_weights(private)[name], value, rtol=1e-4, atol=1e-6)
    assert report.best_valid_ndcg10 is None and report.epochs_run == 1
    assert report.n_train_sequences == len(inputs)


def test_dp_training_takes_the_scheduled_steps_on_the_given_users_only() -> None:
    domain = walk_domain(60)
    text = torch.randn(N_ITEMS, TEXT_DIM)
    users = np.arange(0, 60, 2)
    settings = TrainSettings(epochs=2, batch_size=8, progress=False)
    schedule = dp_schedule(domain, 6, settings.batch_size, users)
    assert schedule.n_examples == 30 and schedule.steps_per_epoch == 4
    model = small_model(dropout=0.1)
    steps = []
    optimizer_step = torch.optim.Adam.step

    def counting_step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        steps.append(1)
        return optimizer_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.Adam, "step", counting_step)
        report = dp_fine_tune(model, domain, text, settings, DpSgdParams(1.0, 1.0), epochs=2,
                              users=users)  # fmt: skip
    assert len(steps) == schedule.steps_per_epoch * 2
    assert report.n_train_sequences == 30 and report.epochs_run == 2
