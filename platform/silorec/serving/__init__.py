"""Using a merged model: export it from a run, load it, recommend from any catalogue
with item text, serve it over HTTP (:mod:`silorec.serving.service`)."""

from silorec.serving.bundle import (
    ExportConfig,
    ExportError,
    LoadedModel,
    PreparedCatalogue,
    Recommendation,
    RecommendError,
    load,
    read_config,
)
from silorec.serving.catalogue import Catalogue
from silorec.serving.export import (
    default_label,
    export_model,
    load_from_run,
    model_labels,
    open_model,
)

__all__ = [
    "Catalogue",
    "ExportConfig",
    "ExportError",
    "LoadedModel",
    "PreparedCatalogue",
    "RecommendError",
    "Recommendation",
    "default_label",
    "export_model",
    "load_from_run",
    "open_model",
    "load",
    "model_labels",
    "read_config",
]
