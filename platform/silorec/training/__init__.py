"""Local fine-tuning on a domain node."""

from silorec.training.finetune import FineTuneReport, fine_tune, training_examples

__all__ = ["FineTuneReport", "fine_tune", "training_examples"]
