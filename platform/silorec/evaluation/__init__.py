"""Evaluation: pure ranking metrics (:mod:`.metrics`, safe on the server) and the one
protocol that runs a model on a domain's held-out items (:mod:`.protocol`, node side
only; import it explicitly)."""

from silorec.evaluation.metrics import metric_names, per_user_metrics, ranking_metrics, target_ranks

__all__ = ["metric_names", "per_user_metrics", "ranking_metrics", "target_ranks"]
