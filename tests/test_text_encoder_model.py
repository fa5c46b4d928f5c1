"""The text-encoder backbone: items and histories as text through all-MiniLM-L6-v2,
pooled as sentence-transformers does; the frozen token table stays out of the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from silorec.merging.learned.coefficients import layer_group
from silorec.models import (
    PAD,
    ItemTokens,
    TextEncoderRec,
    WeightsError,
    build_model,
    catalogue_inputs,
    get_weights,
    model_weight_spec,
    set_weights,
    weights_nbytes,
)
from silorec.models.item_tokens import history_tokens, tokenize_items
from silorec.scenario import ModelSettings
from silorec.text import MiniLMEncoder

TEXTS = [
    "Waterproof hiking boots for trail running",
    "A picture book about a friendly dragon",
    "Stainless steel chef knife",
    "x",
]
ONE_LAYER = ModelSettings(kind="text-encoder", dim=384, encoder_layers=1, dropout=0.0,
                          max_item_tokens=16, max_sequence_tokens=24)  # fmt: skip
TABLE = "bert.embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def model() -> TextEncoderRec:
    return build_model(ONE_LAYER, text_dim=8, seed=0).eval()


@pytest.fixture(scope="module")
def items() -> ItemTokens:
    return tokenize_items(TEXTS, ONE_LAYER.max_item_tokens)


def test_items_are_the_sentence_transformers_embeddings_on_the_full_model() -> None:
    full = build_model(ModelSettings(kind="text-encoder", dim=384, dropout=0.0), 8, seed=0)
    with torch.no_grad():
        ours = full.eval().encode_items(tokenize_items(TEXTS, 128)).numpy()
    reference = MiniLMEncoder(device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_items_are_rows_of_cls_text_sep(items: ItemTokens) -> None:
    cls, sep = items.cls_id, items.sep_id
    assert (cls, sep) == (101, 102)  # BERT's [CLS] and [SEP]
    for row, length in enumerate(items.lengths.tolist()):
        ids = items.input_ids[row].tolist()
        assert ids[0] == cls and ids[length - 1] == sep and not any(ids[length:])
    assert items.lengths[3] == 3  # "x" -> [CLS] x [SEP]


def test_a_history_is_its_items_texts_most_recent_first(items: ItemTokens) -> None:
    def content(item: int) -> list[int]:
        return items.input_ids[item, 1 : int(items.lengths[item]) - 1].tolist()

    cls, sep = items.cls_id, items.sep_id
    histories = torch.tensor([[PAD, 2, 3], [PAD, PAD, 1], [0, 1, 2]])
    tokens = history_tokens(items, histories, max_tokens=20)
    expected_first = [cls, *content(3), sep, *content(2), sep]
    assert tokens.input_ids[0, : len(expected_first)].tolist() == expected_first
    assert int(tokens.lengths[0]) == len(expected_first)
    # A one-item history is exactly its item's own row.
    assert int(tokens.lengths[1]) == int(items.lengths[1])
    assert (
        tokens.input_ids[1, : int(items.lengths[1])].tolist()
        == items.input_ids[1].tolist()[: int(items.lengths[1])]
    )
    # Too long: cut at the budget, still ending in [SEP].
    full = [cls, *content(2), sep, *content(1), sep, *content(0), sep]
    assert len(full) > 20
    assert tokens.input_ids[2].tolist() == [*full[:19], sep]
    assert int(tokens.lengths[2]) == 20
    assert tokens.attention_mask[0].tolist() == [1] * len(expected_first) + [0] * (
        20 - len(expected_first)
    )


def test_items_and_histories_are_unit_vectors_in_one_space(
    model: TextEncoderRec, items: ItemTokens
) -> None:
    with torch.no_grad():
        item_repr = model.encode_items(items)
        histories = torch.tensor([[PAD, 0, 1], [PAD, PAD, 2], [3, 2, 1]])
        states = model.encode_histories(items, item_repr, histories)
        scores = model.scores(states, item_repr)
    assert item_repr.shape == (4, 384) and states.shape == (3, 384)
    torch.testing.assert_close(item_repr.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(states.norm(dim=1), torch.ones(3))
    # [2] is item 2's own text: the same vector, which it ranks first.
    torch.testing.assert_close(states[1], item_repr[2], atol=1e-5, rtol=0)
    assert int(scores[1].argmax()) == 2
    torch.testing.assert_close(scores, states @ item_repr.T / ONE_LAYER.temperature)
    # Chunking and padding change nothing: one item at a time gives the same vectors.
    with torch.no_grad():
        alone = torch.cat([model.encode_items(items.rows(torch.tensor([i]))) for i in range(4)])
    torch.testing.assert_close(alone, item_repr, atol=1e-5, rtol=0)


def test_the_frozen_token_table_is_shared_and_never_uploaded(model: TextEncoderRec) -> None:
    weights = get_weights(model)
    assert TABLE not in weights and TABLE not in dict(model.named_parameters())
    table = model.bert.embeddings.word_embeddings.weight
    assert table.shape == (30522, 384) and not table.requires_grad
    other = build_model(ONE_LAYER, text_dim=8, seed=1)
    assert other.bert.embeddings.word_embeddings.weight is table  # one copy per process
    # What is uploaded: exactly the trainable parameters.
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert weights_nbytes(weights) == 4 * trainable
    assert set(model_weight_spec(ONE_LAYER, 8)) == set(weights)
    assert all(name.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for name in weights)


def test_set_weights_round_trips_and_checks(model: TextEncoderRec, items: ItemTokens) -> None:
    weights = get_weights(model)
    moved = {name: value + 0.01 for name, value in weights.items()}
    other = build_model(ONE_LAYER, text_dim=8, seed=0).eval()
    set_weights(other, moved)
    assert all(np.array_equal(get_weights(other)[n], moved[n]) for n in moved)
    with torch.no_grad():
        assert not torch.allclose(other.encode_items(items), model.encode_items(items))
    set_weights(other, weights)
    with torch.no_grad():
        torch.testing.assert_close(other.encode_items(items), model.encode_items(items))
    with pytest.raises(WeightsError, match="missing parameters"):
        set_weights(other, {n: w for n, w in weights.items() if "layer.0" not in n})
    with pytest.raises(WeightsError, match="unexpected parameters"):
        set_weights(other, {**weights, TABLE: np.zeros((30522, 384), np.float32)})


def test_encoder_layers_cut_the_model_and_its_upload() -> None:
    def upload(layers: int) -> int:
        settings = ModelSettings(kind="text-encoder", dim=384, encoder_layers=layers)
        return weights_nbytes(get_weights(build_model(settings, 8, seed=0)))

    one, two = upload(1), upload(2)
    per_layer = two - one
    # A BERT layer of width 384: 4 attention and 2 feed-forward (x4) matrices, biases, 2 norms.
    assert per_layer == 4 * (4 * (384 * 384 + 384) + 2 * 384 * 1536 + 1536 + 384 + 4 * 384)
    assert one == per_layer + 4 * (512 * 384 + 2 * 384 + 2 * 384)  # + positions, types, norm


def test_layer_groups_of_the_encoder() -> None:
    assert layer_group("bert.encoder.layer.3.attention.self.query.weight") == "layer 3"
    assert layer_group("bert.embeddings.position_embeddings.weight") == "others"
    assert layer_group("blocks.1.attention.query.weight") == "layer 1"  # text-seq unchanged


def test_catalogue_inputs_follow_the_kind() -> None:
    embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    text_seq = catalogue_inputs(ModelSettings(), embeddings, None)
    assert isinstance(text_seq, torch.Tensor) and np.array_equal(text_seq.numpy(), embeddings)
    tokens = catalogue_inputs(ONE_LAYER, embeddings, TEXTS)
    assert isinstance(tokens, ItemTokens) and len(tokens) == 4
    with pytest.raises(ValueError, match="none were given"):
        catalogue_inputs(ONE_LAYER, embeddings, None)
    with pytest.raises(ValueError, match="3 item texts for 4 item embeddings"):
        catalogue_inputs(ONE_LAYER, embeddings, TEXTS[:3])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "text-encoder"}, "model.dim \\(64\\) must equal the text encoder's hidden size"),
        ({"kind": "text-encoder", "dim": 384, "layers": 4},
         "model.layers is a setting of model.kind 'text-seq'"),
        ({"encoder_layers": 2}, "model.encoder_layers is a setting of model.kind 'text-encoder'"),
        ({"kind": "text-encoder", "dim": 384, "encoder_layers": 7}, "less than or equal to 6"),
        ({"kind": "text-encoder", "dim": 384, "max_item_tokens": 64, "max_sequence_tokens": 32},
         "max_sequence_tokens \\(32\\) must be at least model.max_item_tokens \\(64\\)"),
    ],
)  # fmt: skip
def test_settings_are_checked(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSettings(**settings)
