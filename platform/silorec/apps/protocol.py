"""The wire protocol between the merge server and domain nodes: message types and
record names. Both sides import this module and nothing else of each other."""

from __future__ import annotations

from flwr.app import MessageType

#: Query: prepare the domain and report sizes (answers "which domain are you?").
DESCRIBE = f"{MessageType.QUERY}.describe"
#: Train from the sent weights; reply with new weights, item embeddings, metrics.
TRAIN = MessageType.TRAIN
#: Evaluate every sent model; reply with metrics only.
EVALUATE = MessageType.EVALUATE

# Record names inside a message's RecordDict.
CONFIG = "config"  # ConfigRecord: instructions (server -> node)
INFO = "info"  # ConfigRecord: strings about the node (node -> server)
WEIGHTS = "weights"  # ArrayRecord: model parameters, name -> array
ITEM_EMBEDDINGS = "item_embeddings"  # ArrayRecord: {"text": float32 [n_items, dim]}
ITEM_EMBEDDINGS_ARRAY = "text"
METRICS = "metrics"  # MetricRecord: scalars
MODEL_PREFIX = "model:"  # evaluate request: one ArrayRecord per model label
RESULT_PREFIX = "result:"  # evaluate reply: one MetricRecord per model label

# Keys of the train instruction (CONFIG).
PHASE = "phase"  # "fedavg" or "finetune"
EPOCHS = "epochs"  # 0 = the scenario's train.epochs
EARLY_STOPPING = "early-stopping"
SPLITS = "splits"  # evaluate: which leave-one-out splits

#: Evaluate replies name metrics "<split>/<metric>", e.g. "test/recall@10".
SPLIT_SEPARATOR = "/"
