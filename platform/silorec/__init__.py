"""silorec: data-isolated cross-domain sequential recommendation.

Each domain trains its own next-item recommender where its data lives and ships only
model weights; a merge server combines them into one model that serves every domain.
"""

__version__ = "0.1.0"


def load(folder, model: str | None = None, device: str = "auto"):  # noqa: ANN001, ANN201
    """Load an exported model folder (``silorec export``), or a run folder's saved model
    ``model`` (default: its best merge on validation): ``silorec.load(DIR).recommend(
    history, catalogue, k)``. Imported lazily so ``import silorec`` stays light."""
    from silorec.serving import open_model

    return open_model(folder, model, device)


def __getattr__(name: str):  # noqa: ANN202 - lazy public names
    if name == "Catalogue":
        from silorec.serving import Catalogue

        return Catalogue
    raise AttributeError(f"module 'silorec' has no attribute {name!r}")
