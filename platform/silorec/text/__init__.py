"""Frozen item-text encoders and the content-addressed embedding cache.

Item text only: nothing here reads interactions, and nothing imports Flower.
"""

from silorec.text.cache import embed_texts, embedding_key
from silorec.text.encoders import (
    HashingEncoder,
    MiniLMEncoder,
    TextEncoder,
    make_encoder,
)

__all__ = [
    "HashingEncoder",
    "MiniLMEncoder",
    "TextEncoder",
    "embed_texts",
    "embedding_key",
    "make_encoder",
]
