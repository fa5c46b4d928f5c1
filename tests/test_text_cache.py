"""The embedding cache: content keys, disk + memo hits, corruption, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from silorec.text import cache as text_cache
from silorec.text.cache import embed_texts, embedding_key, embedding_path
from silorec.text.encoders import HashingEncoder

TEXTS = ["Ocean puzzle kit with 500 pieces", "Waterproof trail hiking guide", "Mug"]


class CountingEncoder:
    """Wraps an encoder and counts encode() calls (and texts encoded)."""

    def __init__(self, inner=None, fail: bool = False):
        self.inner = inner or HashingEncoder(32)
        self.name, self.dim = self.inner.name, self.inner.dim
        self.calls = 0
        self.fail = fail

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("encoder exploded")
        return self.inner.encode(texts)


@pytest.fixture(autouse=True)
def _fresh_memo():
    text_cache.clear_memo()
    yield
    text_cache.clear_memo()


def _entries(cache_dir: Path) -> list[Path]:
    folder = cache_dir / "embeddings"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_disk_cache_hit_skips_encoder(tmp_path):
    enc = CountingEncoder()
    first = embed_texts(TEXTS, enc, tmp_path)
    assert enc.calls == 1 and first.shape == (3, 32) and first.dtype == np.float32
    path = embedding_path(tmp_path, embedding_key(TEXTS, enc.name))
    assert _entries(tmp_path) == [path]

    second = embed_texts(TEXTS, enc, tmp_path)  # memo hit
    assert enc.calls == 1
    np.testing.assert_array_equal(first, second)

    text_cache.clear_memo()  # a new process: only the disk cache is left
    third = embed_texts(TEXTS, enc, tmp_path)
    assert enc.calls == 1
    np.testing.assert_array_equal(first, third)


def test_returned_arrays_are_independent_copies(tmp_path):
    enc = CountingEncoder()
    a = embed_texts(TEXTS, enc, tmp_path)
    a[:] = 0.0
    b = embed_texts(TEXTS, enc, tmp_path)
    assert np.all(np.linalg.norm(b, axis=1) > 0.99)


def test_no_disk_cache_when_dir_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    enc = CountingEncoder()
    embed_texts(TEXTS, enc, None)
    embed_texts(TEXTS, enc, None)  # the in-process memo still applies
    assert enc.calls == 1
    assert list(tmp_path.iterdir()) == []


def test_key_depends_on_every_text_and_the_encoder():
    base = embedding_key(TEXTS, "hashing-32")
    assert base == embedding_key(list(TEXTS), "hashing-32")
    assert embedding_key(TEXTS[:2] + ["Mug!"], "hashing-32") != base
    assert embedding_key(TEXTS, "hashing-64") != base
    assert embedding_key(TEXTS[::-1], "hashing-32") != base
    # Length prefixes make concatenations unambiguous.
    assert embedding_key(["ab", "c"], "e") != embedding_key(["a", "bc"], "e")
    assert embedding_key(["a"], "bc") != embedding_key(["ca"], "b")
    assert embedding_key([], "e") != embedding_key([""], "e")


def test_changed_text_recomputes(tmp_path):
    enc = CountingEncoder()
    embed_texts(TEXTS, enc, tmp_path)
    embed_texts(TEXTS[:2] + ["Mug set"], enc, tmp_path)
    assert enc.calls == 2
    assert len(_entries(tmp_path)) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "wrong_dtype"])
def test_corrupt_file_is_recomputed(tmp_path, damage):
    enc = CountingEncoder()
    good = embed_texts(TEXTS, enc, tmp_path)
    path = embedding_path(tmp_path, embedding_key(TEXTS, enc.name))
    if damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "wrong_shape":
        np.save(path, np.ones((2, 32), dtype=np.float32))
    else:
        np.save(path, good.astype(np.float64))
    text_cache.clear_memo()
    again = embed_texts(TEXTS, enc, tmp_path)
    assert enc.calls == 2
    np.testing.assert_array_equal(again, good)
    # The damaged file was replaced by a good one.
    text_cache.clear_memo()
    embed_texts(TEXTS, enc, tmp_path)
    assert enc.calls == 2


def test_failing_encoder_leaves_no_file(tmp_path):
    enc = CountingEncoder(fail=True)
    with pytest.raises(RuntimeError, match="exploded"):
        embed_texts(TEXTS, enc, tmp_path)
    leftovers = (
        list((tmp_path / "embeddings").iterdir()) if (tmp_path / "embeddings").exists() else []
    )
    assert leftovers == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    enc = CountingEncoder()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(text_cache.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        embed_texts(TEXTS, enc, tmp_path)
    assert _entries(tmp_path) == []


def test_wrong_encoder_output_is_an_error(tmp_path):
    class Bad(CountingEncoder):
        def encode(self, texts):
            return np.ones((len(texts) + 1, self.dim), dtype=np.float32)

    with pytest.raises(ValueError, match="expected"):
        embed_texts(TEXTS, Bad(), tmp_path)
    assert _entries(tmp_path) == []


def test_empty_catalogue(tmp_path):
    enc = CountingEncoder()
    out = embed_texts([], enc, tmp_path)
    assert out.shape == (0, 32)
