"""Node-side data: domains, importers, subsampling, statistics and the prepared-data
cache. Reads interactions; never imported by the merge server.

The common entry points are re-exported here (lazily: importing the package stays
cheap). ``subsample`` lives in :mod:`silorec.data.subsample` (not re-exported: the
function would clash with its module name).
"""

from silorec.data.domain import LOO_HOLDOUT, DomainData, ItemCatalogue
from silorec.data.errors import DataError

__all__ = [
    "LOO_HOLDOUT",
    "DataError",
    "DomainData",
    "DomainStats",
    "ItemCatalogue",
    "PreparedDomain",
    "default_cache_dir",
    "domain_stats",
    "prepare_domain",
]

_LAZY = {
    "DomainStats": "silorec.data.stats",
    "domain_stats": "silorec.data.stats",
    "PreparedDomain": "silorec.data.prepare",
    "prepare_domain": "silorec.data.prepare",
    "default_cache_dir": "silorec.data.cache",
}


def __getattr__(name: str):  # noqa: ANN202
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'silorec.data' has no attribute {name!r}")
