"""A catalogue to recommend from: item ids and the texts the model reads them by.

Any catalogue with item text will do, including a domain the merge never saw: the
model has no item-ID table, it encodes each item from its text. Texts are built from
the item columns exactly as a domain node builds them (:meth:`ItemCatalogue.texts`),
so an exported model sees a catalogue the way it saw its domains in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from silorec.data.domain import DomainData, ItemCatalogue
from silorec.data.errors import DataError
from silorec.data.importers.generic import read_table
from silorec.scenario import Scenario

DEFAULT_ID_COLUMN = "item_id"


@dataclass(frozen=True)
class Catalogue:
    """Items in a fixed order: ``ids[i]`` is described by ``texts[i]``."""

    ids: list[str]
    texts: list[str]
    source: str = "<memory>"
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.texts):
            raise DataError(f"{self.source}: {len(self.ids)} item ids for {len(self.texts)} texts")
        if not self.ids:
            raise DataError(f"{self.source}: the catalogue has no items")
        index: dict[str, int] = {}
        for position, item in enumerate(self.ids):
            if item in index:
                raise DataError(f"{self.source}: item id {item!r} appears more than once")
            index[item] = position
        object.__setattr__(self, "index", index)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_items(
        cls, ids: Sequence[str], fields: dict[str, Sequence[str]], text_fields: Sequence[str],
        source: str = "<memory>",
    ) -> Catalogue:  # fmt: skip
        """From item ids and text columns (``title``, ``brand``, ...)."""
        items = ItemCatalogue(ids=[str(i) for i in ids],
                              fields={k: [str(v) for v in vs] for k, vs in fields.items()})  # fmt: skip
        return cls(items.ids, items.texts(list(text_fields)), source=source)

    @classmethod
    def from_file(
        cls,
        path: Path,
        text_fields: Sequence[str],
        id_column: str = DEFAULT_ID_COLUMN,
    ) -> Catalogue:
        """An items table (CSV/TSV/Parquet, the generic data format's ``items.csv``):
        the id column plus whichever of ``text_fields`` it has (at least one)."""
        path = Path(path)
        table = read_table(path, [id_column])
        present = [name for name in text_fields if name in table.columns]
        if not present:
            raise DataError(
                f"{path}: none of the text columns {', '.join(text_fields)} is present "
                f"(columns: {', '.join(map(str, table.columns))})"
            )
        ids = [str(v) for v in table[id_column].tolist()]
        fields = {name: ["" if pd.isna(v) else str(v) for v in table[name].tolist()]
                  for name in present}  # fmt: skip
        return cls.from_items(ids, fields, text_fields, source=str(path))


def domain_catalogue(
    scenario: Scenario, name: str, base_dir: Path | None = None
) -> tuple[Catalogue, DomainData]:
    """A scenario domain's catalogue (prepared on this machine, as its node prepares
    it) and its data, e.g. to recommend for one of its users. Only for the data owner:
    it reads the domain's interactions."""
    from silorec.data.prepare import prepare_domain

    try:
        spec = scenario.domain(name)
    except KeyError as exc:
        raise DataError(exc.args[0]) from None
    domain = prepare_domain(spec, scenario.data, base_dir=base_dir).domain
    texts = domain.items.texts(list(scenario.text.fields))
    return Catalogue(list(domain.items.ids), texts, source=f"domain '{name}'"), domain


def user_history(domain: DomainData, user_id: str) -> list[str]:
    """A user's whole sequence in ``domain`` (item ids, oldest first)."""
    try:
        row = list(domain.user_ids).index(str(user_id))
    except ValueError:
        raise DataError(f"domain '{domain.name}': no user {user_id!r}") from None
    items = domain.flat_items[domain.offsets[row] : domain.offsets[row + 1]]
    return [domain.items.ids[i] for i in items]
