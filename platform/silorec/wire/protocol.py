"""The wire protocol between the merge server and domain nodes: message types and
record names. Both sides import this module and nothing else of each other.

It stays free of Flower (message types are Flower's ``MessageType`` values spelled
out) so that the audit, which judges replies against this protocol, is too.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Query: prepare the domain and report sizes (answers "which domain are you?").
DESCRIBE = "query.describe"
#: Train from the sent weights; reply with new weights, item embeddings (and item
#: texts, see ITEM_TEXTS), metrics.
TRAIN = "train"
#: Evaluate every sent model; reply with metrics only.
EVALUATE = "evaluate"

# Record names inside a message's RecordDict.
CONFIG = "config"  # ConfigRecord: instructions (server -> node)
INFO = "info"  # ConfigRecord: strings about the node (node -> server)
WEIGHTS = "weights"  # ArrayRecord: model parameters, name -> array
ITEM_EMBEDDINGS = "item_embeddings"  # ArrayRecord: {"text": float32 [n_items, dim]}
ITEM_EMBEDDINGS_ARRAY = "text"
# ConfigRecord {"texts": list[str]}: the catalogue's item texts, one per item. Only a
# text-encoder scenario with a learned merge sends them (its pseudo-users are texts).
ITEM_TEXTS = "item_texts"
ITEM_TEXTS_KEY = "texts"
METRICS = "metrics"  # MetricRecord: scalars
# ArrayRecord: a LoRA adapter, "<layer>.lora_down"/"<layer>.lora_up" -> array (see
# silorec.models.lora). A weaving train message carries the base model in WEIGHTS and
# the adapter to train here; its reply carries the trained adapter, and no weights.
ADAPTER = "adapter"
MODEL_PREFIX = "model:"  # evaluate request: one ArrayRecord per model label
RESULT_PREFIX = "result:"  # evaluate reply: one MetricRecord per model label
PAIRS = "pairs"  # evaluate reply: paired-comparison sums, see pair_key()

# Keys of the train instruction (CONFIG).
PHASE = "phase"  # "fedavg", "finetune" or, with an ADAPTER, "adapter"/"weave"
EPOCHS = "epochs"  # 0 = the scenario's train.epochs
EARLY_STOPPING = "early-stopping"
#: The SHA-256 (:func:`catalogue_sha256`) of the catalogue embeddings the server already
#: holds from this domain ("" = none): a node whose own embeddings hash the same leaves
#: them out of its reply, so a catalogue is uploaded once per run.
CATALOGUE_SHA256 = "catalogue-sha256"
SPLITS = "splits"  # evaluate: which leave-one-out splits
LABELS = "labels"  # evaluate: the models' labels, in the order pair indices refer to
REFERENCES = "references"  # evaluate: labels pair sums are taken against (absent: all pairs)

#: Evaluate replies name metrics "<split>/<metric>", e.g. "test/recall@10".
SPLIT_SEPARATOR = "/"

#: Statistics of a paired comparison (see silorec.evaluation.paired.PairedSums).
PAIR_STATS = ("n", "sum", "sumsq")


def pair_key(split: str, metric: str, first: int, second: int, stat: str) -> str:
    """Key of one paired statistic in the PAIRS record: models by their index in the
    request's LABELS (labels may contain any character)."""
    return f"{split}/{metric}/{first}/{second}/{stat}"


def catalogue_sha256(embeddings: np.ndarray) -> str:
    """Hash of a catalogue's embeddings (shape and float32 bytes), the same on both sides."""
    array = np.ascontiguousarray(embeddings, dtype=np.float32)
    digest = hashlib.sha256(repr(array.shape).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
