"""WeaveRec, data-isolated: hybrid LoRA adapters woven between a target domain's node
and a source domain's node, then fused with the target's own adapter by merging.

WeaveRec (Asakakidder/WeaveRec) trains each hybrid adapter on the *pooled* data of a
target T and a source S. Here no node ever sees another's data: a hybrid adapter
visits S's node for ``k`` local epochs, then T's node for ``k``, for ``R`` rounds;
only the adapter tensors move, through the merge server, under the same wire policy,
guard, audit log and privacy ledger as any upload. The fused model (T's adapter and
its hybrids merged on ΔW, folded into the base) serves T with no extra inference cost.

- :mod:`silorec.weaving.schedule`: which node a hybrid visits when, packed so that
  every grid round sends each node at most one adapter;
- :mod:`silorec.weaving.labels`: the result labels of weaving models.

The server side of the protocol is :mod:`silorec.apps.weave_phase`; the node trains
an adapter in :meth:`silorec.node.DomainNode.train`.
"""

from silorec.weaving.labels import (
    adapter_label,
    fedavg_adapter_label,
    fused_label,
    hybrid_label,
    plain_merge_label,
)
from silorec.weaving.schedule import Hybrid, Step, pack_steps, visit_order

__all__ = [
    "Hybrid",
    "Step",
    "adapter_label",
    "fedavg_adapter_label",
    "fused_label",
    "hybrid_label",
    "pack_steps",
    "plain_merge_label",
    "visit_order",
]
