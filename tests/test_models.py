"""The text-based sequential recommender and its weight utilities."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from silorec.models import (
    MODEL_KINDS,
    PAD,
    TextEncoderRec,
    TextSeqRec,
    WeightsError,
    build_model,
    check_weights,
    get_weights,
    model_weight_spec,
    set_weights,
    to_numpy,
    to_tensors,
    weight_spec,
    weights_nbytes,
)
from silorec.models.inputs import pad_left
from silorec.models.text_seq import CausalSelfAttention, TextAdaptor
from silorec.scenario import ModelSettings

TEXT_DIM = 24
SETTINGS = ModelSettings(dim=16, layers=2, heads=2, max_len=12, dropout=0.2, temperature=0.05)


def eval_model(settings: ModelSettings = SETTINGS, seed: int = 0) -> TextSeqRec:
    """A model in eval mode (dropout off), so that outputs are deterministic."""
    model = build_model(settings, TEXT_DIM, seed=seed)
    model.eval()
    return model


def text_embeddings(n_items: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n_items, TEXT_DIM, generator=torch.Generator().manual_seed(seed))


def states_of(model: TextSeqRec, embeddings: torch.Tensor, sequences: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        states, _ = model(embeddings, torch.as_tensor(sequences, dtype=torch.int64))
    return states


# -- forward pass ----------------------------------------------------------------


def test_output_shapes_and_unit_norms() -> None:
    model = eval_model()
    embeddings = text_embeddings(30)
    sequences = torch.tensor([[PAD, PAD, 3, 4, 5], [1, 2, 3, 4, 29], [PAD, PAD, PAD, PAD, 0]])
    with torch.no_grad():
        states, items = model(embeddings, sequences)
        scores = model.scores(states[:, -1], items)
    assert states.shape == (3, 5, SETTINGS.dim)
    assert items.shape == (30, SETTINGS.dim)
    assert scores.shape == (3, 30)
    assert torch.isfinite(states).all()  # padded queries keep their own key: no NaN rows
    torch.testing.assert_close(states.norm(dim=-1), torch.ones(3, 5))
    torch.testing.assert_close(items.norm(dim=-1), torch.ones(30))


def test_a_fully_padded_row_stays_finite() -> None:
    model = eval_model()
    states = states_of(model, text_embeddings(10), np.full((2, 6), PAD))
    assert torch.isfinite(states).all()


def test_state_at_t_ignores_later_items() -> None:
    model = eval_model()
    embeddings = text_embeddings(40)
    rng = np.random.default_rng(0)
    original = rng.integers(0, 40, size=(3, 10))
    for t in range(9):
        changed = original.copy()
        changed[:, t + 1 :] = rng.integers(0, 40, size=(3, 9 - t))
        before = states_of(model, embeddings, original)
        after = states_of(model, embeddings, changed)
        torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1])
        assert not torch.allclose(after[:, -1], before[:, -1])  # later states do change


def test_earlier_items_reach_the_last_state() -> None:
    """Attention really mixes the sequence: the first item changes the last state."""
    model = eval_model()
    embeddings = text_embeddings(20)
    states_a = states_of(model, embeddings, np.array([[1, 2, 3, 4]]))
    states_b = states_of(model, embeddings, np.array([[9, 2, 3, 4]]))
    assert not torch.allclose(states_a[0, -1], states_b[0, -1], atol=1e-4)


def test_left_padding_does_not_change_the_states() -> None:
    settings = ModelSettings(dim=16, layers=2, heads=4, max_len=50, dropout=0.3)
    model = eval_model(settings)
    embeddings = text_embeddings(60)
    sequences = [np.array([5, 17, 3, 42]), np.array([8]), np.array([1, 2, 3, 4, 5])]
    narrow = states_of(model, embeddings, pad_left(sequences, 5))
    wide = states_of(model, embeddings, pad_left(sequences, 50))
    torch.testing.assert_close(wide[:, -1], narrow[:, -1], rtol=1e-5, atol=1e-5)
    # every real position agrees, not only the last one
    torch.testing.assert_close(wide[0, -4:], narrow[0, -4:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wide[2, -5:], narrow[2, -5:], rtol=1e-5, atol=1e-5)


def test_sequences_longer_than_max_len_are_rejected() -> None:
    model = eval_model()
    items = model.encode_items(text_embeddings(5))
    too_long = torch.zeros(1, SETTINGS.max_len + 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="length 13 exceed the model's max_len 12"):
        model.encode_sequences(items, too_long)
    model.encode_sequences(items, too_long[:, 1:])  # exactly max_len is fine


# -- scores -------------------------------------------------------------------------


def test_scores_are_cosine_over_temperature_by_hand() -> None:
    model = eval_model()  # temperature 0.05
    sequence = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    expected = torch.tensor([[20.0, 0.0, 12.0, -20.0]])
    torch.testing.assert_close(model.scores(sequence, items), expected)
    assert model.temperature == 0.05


def test_model_scores_equal_cosine_similarity_over_temperature() -> None:
    model = eval_model(ModelSettings(dim=16, layers=1, heads=2, max_len=12, temperature=0.2))
    embeddings = text_embeddings(25)
    with torch.no_grad():
        states, items = model(embeddings, torch.tensor([[3, 1, 4, 1, 5]]))
        scores = model.scores(states[:, -1], items)
        expected = F.cosine_similarity(states[:, -1][:, None, :], items[None], dim=-1) / 0.2
    torch.testing.assert_close(scores, expected)
    assert scores.abs().max() <= 1 / 0.2 + 1e-4


# -- domain-agnostic parameters ----------------------------------------------------------


def test_the_same_weights_score_catalogues_of_any_size() -> None:
    model = eval_model()
    large = text_embeddings(300, seed=1)
    small = large[:7]  # the first 7 items of the large catalogue
    sequences = torch.tensor([[PAD, 0, 6, 2], [1, 2, 3, 4]])
    with torch.no_grad():
        states_small, items_small = model(small, sequences)
        states_large, items_large = model(large, sequences)
        scores_small = model.scores(states_small[:, -1], items_small)
        scores_large = model.scores(states_large[:, -1], items_large)
    assert scores_small.shape == (2, 7) and scores_large.shape == (2, 300)
    # an item's representation depends on its own text only, not on the catalogue
    torch.testing.assert_close(items_large[:7], items_small)
    torch.testing.assert_close(scores_large[:, :7], scores_small)


@pytest.mark.parametrize("adaptor", ["linear", "mlp"])
def test_no_parameter_depends_on_the_number_of_items(adaptor: str) -> None:
    settings = ModelSettings(dim=16, layers=2, heads=2, max_len=12, adaptor=adaptor)
    model = build_model(settings, TEXT_DIM, seed=0)
    allowed_sizes = {TEXT_DIM, settings.dim, 4 * settings.dim, settings.max_len}
    for name, tensor in model.state_dict().items():
        assert "item" not in name.lower(), name
        assert set(tensor.shape) <= allowed_sizes, f"{name}: {tuple(tensor.shape)}"
    # nothing about a catalogue goes into the constructor either
    assert list(inspect.signature(build_model).parameters) == ["settings", "text_dim", "seed"]


def test_attention_is_built_from_linear_layers_only() -> None:
    """Opacus computes per-sample gradients for nn.Linear, not nn.MultiheadAttention."""
    model = build_model(SETTINGS, TEXT_DIM, seed=0)
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    attention = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    assert len(attention) == SETTINGS.layers
    for module in attention:
        for child in module.modules():
            if child is not module:
                assert isinstance(child, nn.Linear | nn.Dropout), type(child)
    supported = (nn.Linear, nn.LayerNorm, nn.Embedding)
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            assert isinstance(module, supported), type(module)


def test_adaptor_kinds() -> None:
    linear = build_model(ModelSettings(adaptor="linear", dim=16), TEXT_DIM, seed=0)
    mlp = build_model(ModelSettings(adaptor="mlp", dim=16), TEXT_DIM, seed=0)
    assert "adaptor.layers.weight" in linear.state_dict()
    assert {"adaptor.layers.0.weight", "adaptor.layers.3.weight"} <= set(mlp.state_dict())
    with pytest.raises(ValueError, match="unknown adaptor kind 'conv'"):
        TextAdaptor(TEXT_DIM, 16, "conv", 0.1)
    assert MODEL_KINDS == {"text-seq": TextSeqRec, "text-encoder": TextEncoderRec}


# -- build_model -----------------------------------------------------------------


def test_build_model_is_deterministic_per_seed() -> None:
    first = get_weights(build_model(SETTINGS, TEXT_DIM, seed=7))
    again = get_weights(build_model(SETTINGS, TEXT_DIM, seed=7))
    other = get_weights(build_model(SETTINGS, TEXT_DIM, seed=8))
    assert list(first) == list(again)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    differing = [n for n in first if not np.array_equal(first[n], other[n])]
    # every randomly initialised matrix differs (norm weights start at 1, biases may be 0)
    assert "adaptor.layers.weight" in differing and "recency.weight" in differing
    assert len(differing) >= 10


def test_build_model_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_model(SETTINGS, TEXT_DIM, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(3))


# -- weights -------------------------------------------------------------------------


def test_get_weights_are_float32_copies_in_state_dict_order() -> None:
    model = build_model(SETTINGS, TEXT_DIM, seed=0)
    weights = get_weights(model)
    assert list(weights) == list(model.state_dict())
    assert all(a.dtype == np.float32 for a in weights.values())
    before = model.state_dict()["final_norm.weight"].clone()
    for array in weights.values():
        array[...] = 42.0
    torch.testing.assert_close(model.state_dict()["final_norm.weight"], before)
    assert not any(np.all(a == 42.0) for a in get_weights(model).values())


def test_set_weights_round_trip_reproduces_the_model() -> None:
    source, target = eval_model(seed=1), eval_model(seed=2)
    set_weights(target, get_weights(source))
    embeddings = text_embeddings(15)
    sequences = np.array([[PAD, 1, 2, 3], [4, 5, 6, 7]])
    torch.testing.assert_close(
        states_of(target, embeddings, sequences), states_of(source, embeddings, sequences)
    )
    loaded = get_weights(source)
    for name, array in get_weights(target).items():
        np.testing.assert_array_equal(array, loaded[name])


def test_set_weights_copies_the_arrays() -> None:
    model = eval_model(seed=1)
    weights = get_weights(eval_model(seed=2))
    set_weights(model, weights)
    expected = weights["final_norm.weight"].copy()
    weights["final_norm.weight"][...] = 0.0  # the caller reuses its buffers
    np.testing.assert_array_equal(get_weights(model)["final_norm.weight"], expected)


def test_set_weights_accepts_any_memory_layout() -> None:
    model = eval_model(seed=1)
    weights = get_weights(eval_model(seed=2))
    reversed_bias = weights["final_norm.bias"][::-1]
    weights["final_norm.bias"] = reversed_bias
    set_weights(model, weights)
    np.testing.assert_array_equal(get_weights(model)["final_norm.bias"], reversed_bias)


def _drop(name: str) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda w: w.pop(name)


BAD_WEIGHTS: dict[str, tuple[Callable[[dict[str, np.ndarray]], None], str]] = {
    "missing": (_drop("final_norm.bias"), "missing parameters: final_norm.bias"),
    "extra": (
        lambda w: w.__setitem__("item_table.weight", np.zeros((3, 16), np.float32)),
        "unexpected parameters: item_table.weight",
    ),
    "shape": (
        lambda w: w.__setitem__("recency.weight", np.zeros((13, 16), np.float32)),
        r"recency.weight: shape \(13, 16\), expected \(12, 16\)",
    ),
    "dtype": (
        lambda w: w.__setitem__("final_norm.weight", w["final_norm.weight"].astype(np.float64)),
        "final_norm.weight: dtype float64, expected float32",
    ),
    "nan": (
        lambda w: w["blocks.0.attention.query.weight"].__setitem__((0, 0), np.nan),
        "blocks.0.attention.query.weight: contains NaN or Inf",
    ),
    "inf": (
        lambda w: w["blocks.1.feed_forward.0.bias"].__setitem__(3, -np.inf),
        "blocks.1.feed_forward.0.bias: contains NaN or Inf",
    ),
}


@pytest.mark.parametrize("problem", list(BAD_WEIGHTS))
def test_bad_weights_are_rejected_naming_the_parameter(problem: str) -> None:
    spoil, message = BAD_WEIGHTS[problem]
    model = build_model(SETTINGS, TEXT_DIM, seed=0)
    before = get_weights(model)
    weights = get_weights(build_model(SETTINGS, TEXT_DIM, seed=1))
    spoil(weights)
    with pytest.raises(WeightsError, match=message):
        check_weights(weights, weight_spec(before))
    with pytest.raises(WeightsError, match=message):
        set_weights(model, weights)
    # nothing was half-loaded
    for name, array in get_weights(model).items():
        np.testing.assert_array_equal(array, before[name])


def test_check_weights_reports_every_kind_of_problem_at_once() -> None:
    expected = {"a": ((2,), "float32"), "b": ((3,), "float32"), "c": ((1,), "float32")}
    weights = {
        "a": np.zeros(3, np.float32),
        "c": np.array([np.inf], np.float32),
        "z": np.zeros(1, np.float32),
    }
    with pytest.raises(WeightsError) as info:
        check_weights(weights, expected)
    message = str(info.value)
    assert "missing parameters: b" in message
    assert "unexpected parameters: z" in message
    assert "a: shape (3,), expected (2,)" in message
    assert "c: contains NaN or Inf" in message
    assert isinstance(info.value, ValueError)


def test_model_weight_spec_describes_every_model_of_the_configuration() -> None:
    spec = model_weight_spec(SETTINGS, TEXT_DIM)
    model = build_model(SETTINGS, TEXT_DIM, seed=5)
    assert list(spec) == list(model.state_dict())
    assert spec["recency.weight"] == ((SETTINGS.max_len, SETTINGS.dim), "float32")
    assert spec["adaptor.layers.weight"] == ((SETTINGS.dim, TEXT_DIM), "float32")
    assert spec["blocks.0.feed_forward.0.weight"] == ((4 * SETTINGS.dim, SETTINGS.dim), "float32")
    check_weights(get_weights(model), spec)  # any seed fits
    with pytest.raises(WeightsError, match="adaptor.layers.weight: shape"):
        check_weights(get_weights(build_model(SETTINGS, TEXT_DIM + 1, seed=0)), spec)


def test_tensor_numpy_conversions_and_payload_size() -> None:
    weights = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(5, np.float32)}
    tensors = to_tensors(weights)
    assert all(t.dtype == torch.float32 for t in tensors.values())
    back = to_numpy(tensors)
    assert list(back) == ["a", "b"]
    for name in weights:
        np.testing.assert_array_equal(back[name], weights[name])
        assert back[name].dtype == np.float32
    assert weights_nbytes(weights) == (6 + 5) * 4
    assert to_tensors({"x": np.ones(2, np.float64)})["x"].dtype == torch.float32


# -- inputs ------------------------------------------------------------------------


def test_pad_left_by_hand() -> None:
    sequences = [
        np.array([1, 2, 3]),
        np.array([4]),
        np.array([], dtype=np.int32),
        np.array([5, 6, 7, 8, 9]),
    ]
    expected = np.array(
        [[1, 2, 3], [PAD, PAD, 4], [PAD, PAD, PAD], [7, 8, 9]],
        dtype=np.int64,
    )
    padded = pad_left(sequences, 3)
    assert padded.dtype == np.int64
    np.testing.assert_array_equal(padded, expected)
    assert pad_left([], 4).shape == (0, 4)
