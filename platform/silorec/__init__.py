"""silorec: data-isolated cross-domain sequential recommendation.

Each domain trains its own next-item recommender where its data lives and ships only
model weights; a merge server combines them into one model that serves every domain.
"""

__version__ = "0.1.0"
