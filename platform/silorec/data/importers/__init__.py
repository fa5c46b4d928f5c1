"""Importers: each reads one on-disk format and returns a :class:`DomainData`.

- :func:`load_mergerec`: the MergeRec release (folder or ``.tar.gz``).
- :func:`load_generic`: the documented generic format (CSV or Parquet tables).
- :func:`load_amazon_raw`: raw UCSD Amazon review + metadata files (2014 or 2018).

Each importer is imported lazily by :mod:`silorec.data.prepare`; importing this
package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from silorec.data.importers.amazon_raw import load_amazon_raw
    from silorec.data.importers.generic import load_generic
    from silorec.data.importers.mergerec import load_mergerec

__all__ = ["load_amazon_raw", "load_generic", "load_mergerec"]

_MODULES = {
    "load_mergerec": "silorec.data.importers.mergerec",
    "load_generic": "silorec.data.importers.generic",
    "load_amazon_raw": "silorec.data.importers.amazon_raw",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        import importlib

        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(name)
