"""Provenance of merged models: content hashes, the inputs a merge was made from,
the merge card, and replaying a merge to check it (server-safe: nothing here reads a
domain's interactions or imports Flower)."""

from silorec.provenance.card import (
    CARD_JSON,
    CARD_MD,
    CardError,
    build_card,
    card_for_model,
    read_card,
    render_card,
    write_card,
)
from silorec.provenance.hashing import file_sha256, text_sha256, weights_sha256
from silorec.provenance.merge_inputs import (
    MergeInputsError,
    StoredInputs,
    has_merge_inputs,
    load_merge_inputs,
    save_merge_inputs,
)

__all__ = [
    "CARD_JSON",
    "CARD_MD",
    "CardError",
    "MergeInputsError",
    "StoredInputs",
    "build_card",
    "card_for_model",
    "file_sha256",
    "has_merge_inputs",
    "load_merge_inputs",
    "read_card",
    "render_card",
    "save_merge_inputs",
    "text_sha256",
    "weights_sha256",
    "write_card",
]
