"""Text encoders: the hashing test encoder and the real, offline all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from silorec.scenario.schema import TextSettings
from silorec.text.encoders import (
    HashingEncoder,
    MiniLMEncoder,
    TextEncoder,
    make_encoder,
)

TEXTS = [
    "Waterproof trail hiking backpack",
    "Lightweight hiking backpack for the trail",
    "Ceramic coffee mug set of 4",
    "",
    "   ",
]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_hashing_shape_dtype_and_unit_norm():
    enc = HashingEncoder(64)
    assert isinstance(enc, TextEncoder)
    assert enc.name == "hashing-64" and enc.dim == 64
    x = enc.encode(TEXTS)
    assert x.shape == (len(TEXTS), 64) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, 64)


def test_hashing_shared_words_are_closer():
    x = HashingEncoder(384).encode(TEXTS[:3])
    assert _cos(x[0], x[1]) > 0.4
    assert _cos(x[0], x[1]) > _cos(x[0], x[2]) + 0.3
    # Case and punctuation do not matter; word order does not either (bag of words).
    y = HashingEncoder(384).encode(["HIKING, trail!", "trail hiking"])
    assert _cos(y[0], y[1]) == pytest.approx(1.0, abs=1e-6)


def test_hashing_empty_text_is_a_fixed_unit_vector():
    enc = HashingEncoder(32)
    x = enc.encode(["", "  ", "!!", "word"])
    np.testing.assert_allclose(x[0], x[1])
    np.testing.assert_allclose(x[0], x[2])
    np.testing.assert_allclose(HashingEncoder(32).encode([""])[0], x[0])
    assert np.linalg.norm(x[0]) == pytest.approx(1.0, abs=1e-6)


def test_hashing_is_deterministic_across_processes():
    here = HashingEncoder(48).encode(TEXTS)
    code = (
        "import json, sys; from silorec.text.encoders import HashingEncoder; "
        "texts = json.loads(sys.argv[1]); "
        "print(json.dumps(HashingEncoder(48).encode(texts).tolist()))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")  # a different str-hash salt
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(TEXTS)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    there = np.asarray(json.loads(out.stdout), dtype=np.float32)
    np.testing.assert_array_equal(here, there)


def test_make_encoder():
    enc = make_encoder(TextSettings(encoder="hashing", hashing_dim=16))
    assert isinstance(enc, HashingEncoder) and enc.dim == 16
    enc = make_encoder(TextSettings(encoder="minilm", batch_size=7))
    assert isinstance(enc, MiniLMEncoder)
    assert enc.name == "all-MiniLM-L6-v2" and enc.dim == 384 and enc.batch_size == 7


def test_minilm_loads_offline_and_is_semantic(monkeypatch):
    """The real pretrained model, from the installed wheel, with the Hub offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    enc = MiniLMEncoder(batch_size=8, device="cpu")
    texts = [
        "Waterproof hiking boots for mountain trails",
        "Trekking backpack for camping in the wilderness",
        "Stainless steel frying pan with nonstick coating",
        "Chocolate chip cookie baking book for beginners",
        "Sourdough bread baking guide",
    ]
    x = enc.encode(texts)
    assert x.shape == (5, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]  # outdoors vs cookware/baking
    assert sim[3, 4] > sim[3, 0] and sim[3, 4] > sim[3, 2]  # baking vs the rest
    # Deterministic within a process (the loaded model is cached and in eval mode).
    np.testing.assert_allclose(enc.encode(texts[:2]), x[:2], atol=1e-5)
