"""The one representation of a domain: time-ordered user sequences and an item
catalogue with text.

Sequences are stored flat (one int32 array of item indices plus offsets) so that a
domain of hundreds of thousands of interactions is a few megabytes, caches as a single
``.npz`` and slices without Python loops. Item indices are local to the domain
(``0 .. n_items-1``) and index :attr:`ItemCatalogue.ids`.

The leave-one-out split is derived, never stored: for every user with
``holdout == 2`` the last item is the test target, the one before it the validation
target, and the rest is training data. Users with ``holdout == 0`` (too short, or
published without held-out items) only contribute training data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Split = Literal["valid", "test"]

#: Number of held-out items per evaluable user: validation and test.
LOO_HOLDOUT = 2
#: The text of an item that has none in any text field (see ItemCatalogue.texts).
NO_TEXT = "An item without a description"


@dataclass(frozen=True)
class ItemCatalogue:
    """Items of one domain: raw identifiers and text fields, aligned by item index."""

    ids: list[str]
    fields: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, values in self.fields.items():
            if len(values) != len(self.ids):
                raise ValueError(
                    f"item field '{name}' has {len(values)} values for {len(self.ids)} items"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def texts(self, field_names: list[str]) -> list[str]:
        """One text per item for the text encoder: the named fields that are present
        and non-empty, as ``"<title>. Brand: <brand>. Category: <category>"``.

        The title comes bare (it carries most meaning); other fields are labelled so
        the encoder can tell a brand from a category. An item with no text at all
        gets :data:`NO_TEXT`, never its identifier: item texts feed the embeddings a
        node uploads (and, for a text-encoder model, may be uploaded themselves), and a
        raw identifier must not leave the node inside them.
        """
        out: list[str] = []
        for i in range(len(self.ids)):
            parts: list[str] = []
            for name in field_names:
                values = self.fields.get(name)
                if values is None:
                    continue
                value = " ".join(str(values[i]).split())
                if not value:
                    continue
                parts.append(value if name == "title" else f"{name.capitalize()}: {value}")
            out.append(". ".join(parts) if parts else NO_TEXT)
        return out


@dataclass
class DomainData:
    """Users' time-ordered interaction sequences plus the item catalogue.

    ``flat_items[offsets[u]:offsets[u+1]]`` is user ``u``'s sequence, oldest first.
    """

    name: str
    items: ItemCatalogue
    user_ids: list[str]
    offsets: np.ndarray  # int64, shape (n_users + 1,)
    flat_items: np.ndarray  # int32, shape (n_interactions,)
    holdout: np.ndarray  # int8, shape (n_users,): LOO_HOLDOUT or 0

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.flat_items = np.asarray(self.flat_items, dtype=np.int32)
        self.holdout = np.asarray(self.holdout, dtype=np.int8)
        n_users = len(self.user_ids)
        if self.offsets.shape != (n_users + 1,):
            raise ValueError(f"domain '{self.name}': offsets must have n_users + 1 entries")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.flat_items):
            raise ValueError(f"domain '{self.name}': offsets do not span flat_items")
        if np.any(np.diff(self.offsets) < 1):
            raise ValueError(f"domain '{self.name}': every user needs at least one item")
        if self.holdout.shape != (n_users,):
            raise ValueError(f"domain '{self.name}': holdout must have one entry per user")
        if not np.all(np.isin(self.holdout, (0, LOO_HOLDOUT))):
            raise ValueError(f"domain '{self.name}': holdout entries must be 0 or {LOO_HOLDOUT}")
        if len(self.flat_items) and (
            self.flat_items.min() < 0 or self.flat_items.max() >= len(self.items)
        ):
            raise ValueError(f"domain '{self.name}': item index outside the catalogue")
        too_short = (self.holdout == LOO_HOLDOUT) & (self.lengths < LOO_HOLDOUT + 1)
        if np.any(too_short):
            raise ValueError(
                f"domain '{self.name}': {int(too_short.sum())} users hold out items but "
                f"have fewer than {LOO_HOLDOUT + 1} interactions"
            )

    # -- sizes -------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.flat_items)

    @property
    def lengths(self) -> np.ndarray:
        """Sequence length per user."""
        return np.diff(self.offsets)

    # -- access ------------------------------------------------------------
    def sequence(self, user: int) -> np.ndarray:
        """User ``user``'s whole sequence, oldest first."""
        return self.flat_items[self.offsets[user] : self.offsets[user + 1]]

    def train_sequence(self, user: int) -> np.ndarray:
        """The part of the sequence training may see (held-out items removed)."""
        return self.flat_items[self.offsets[user] : self.offsets[user + 1] - self.holdout[user]]

    def evaluable_users(self) -> np.ndarray:
        """Indices of users with validation and test targets."""
        return np.flatnonzero(self.holdout == LOO_HOLDOUT)

    def eval_case(self, user: int, split: Split) -> tuple[np.ndarray, int]:
        """``(input sequence, target item)`` for a leave-one-out split.

        Validation: input = training sequence, target = second-to-last item.
        Test: input = training sequence + validation item, target = last item.
        """
        if self.holdout[user] != LOO_HOLDOUT:
            raise ValueError(f"user {user} of domain '{self.name}' has no held-out items")
        end = self.offsets[user + 1]
        cut = end - (2 if split == "valid" else 1)
        return self.flat_items[self.offsets[user] : cut], int(self.flat_items[cut])
