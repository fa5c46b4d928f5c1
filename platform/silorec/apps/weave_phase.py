"""The weaving phase of the merge server: WeaveRec without pooling (:mod:`silorec.weaving`).

Over the same Grid and Messages as every other phase (so it runs in-process, in
Flower simulation and in deployment alike):

1. every merged domain trains its own adapter on the base θ0 (target-only on its
   own domain, source-only elsewhere; the inputs of the plain-merge baseline);
2. each (target, source) hybrid adapter weaves: source node, target node, ... for
   ``rounds`` rounds of ``epochs_per_visit`` (:func:`silorec.weaving.pack_steps`);
   only the adapter crosses the wire, in both directions (the base θ0 goes down with
   it, since a node keeps nothing between messages);
3. optionally, FedAvg of adapters over every merged domain;
4. per target, its own adapter and its hybrids are folded into θ0 (ΔW = (α/r)·B·A,
   exact) and fused by every ``weave.fusion`` merge; the plain merge of every
   domain's own adapter is fused the same way.

A reply that fails validation costs that visit's hybrid, never the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from silorec.apps.merge_phase import MergeInputs, run_merges
from silorec.apps.payload import payload_of
from silorec.apps.records import weights_to_record
from silorec.logs import get_logger
from silorec.models import Weights, build_model, weights_nbytes
from silorec.models.lora import adapter_spec, fold_adapter, init_adapter
from silorec.weaving import (
    Hybrid,
    adapter_label,
    fedavg_adapter_label,
    fused_label,
    hybrid_label,
    pack_steps,
    plain_merge_label,
)
from silorec.wire import protocol
from silorec.wire.replies import ReplyRejected, read_adapter_train

if TYPE_CHECKING:
    from silorec.apps.server import MergeServer

log = get_logger("silorec.server")

PHASE = "weave"
#: label -> (kind, source, weights), as the evaluate phase takes them.
Models = dict[str, tuple[str, str | None, Weights]]


class WeavePhase:
    """One run's weaving, on the server's grid and bookkeeping."""

    def __init__(self, server: MergeServer, theta0: Weights) -> None:
        self.server = server
        self.scenario = server.scenario
        self.weave = server.scenario.weave
        self.theta0 = theta0
        self.base_record = weights_to_record(theta0)
        assert server.text_dim is not None
        model = build_model(self.scenario.model, server.text_dim, seed=0)
        self.spec = adapter_spec(model, self.weave.rank, self.weave.layers)
        self.start = init_adapter(model, self.weave.rank, self.weave.layers,
                                  seed=self.scenario.seed)  # fmt: skip
        self.steps: list[dict[str, Any]] = []

    # -- one grid round of adapter training ------------------------------------

    def _train(
        self, jobs: Mapping[str, tuple[Weights, int, bool, str]], group: str
    ) -> dict[str, tuple[Weights, float]]:
        """Send each domain its adapter job ``(adapter, epochs, early stopping,
        label)``; the validated trained adapters and training-set sizes by domain."""
        server = self.server
        states = [server.domains[d] for d in jobs if server.domains[d].usable]

        def make(state: Any) -> RecordDict:
            _, epochs, early, label = jobs[state.name]
            config = ConfigRecord({protocol.PHASE: label, protocol.EPOCHS: epochs,
                                   protocol.EARLY_STOPPING: early})  # fmt: skip
            return RecordDict({protocol.CONFIG: config, protocol.WEIGHTS: self.base_record,
                               protocol.ADAPTER: weights_to_record(jobs[state.name][0])})  # fmt: skip

        started = time.perf_counter()
        sent = dict(server.exchange.bytes_sent)
        received = dict(server.exchange.bytes_received)
        replies = server._round(states, protocol.TRAIN, make,
                                timeout=self.scenario.federation.train_timeout_s, phase=group)  # fmt: skip
        valid: dict[str, tuple[Weights, float]] = {}
        for name, reply in replies.items():
            described = server.domains[name].described
            assert described is not None
            try:
                parsed = read_adapter_train(payload_of(reply), domain=name, adapter=self.spec,
                                            described=described)  # fmt: skip
            except ReplyRejected as exc:
                server._fail(group, f"rejected adapter: {exc}", name, status="rejected")
                continue
            valid[name] = (parsed.adapter, parsed.metrics["n_train_sequences"])
        self.steps.append({
            "group": group,
            "visits": {d: jobs[d][3] for d in jobs},
            "accepted": sorted(valid),
            "seconds": round(time.perf_counter() - started, 3),
            "bytes_sent": _added(server.exchange.bytes_sent, sent),
            "bytes_received": _added(server.exchange.bytes_received, received),
        })  # fmt: skip
        return valid

    # -- the phase ---------------------------------------------------------------

    def run(self) -> tuple[Models, dict[str, Any]]:
        """Every weaving model by label, and the phase's facts for results.json."""
        weave, scenario = self.weave, self.scenario
        merged = [d.name for d in scenario.merged_domains if self.server.domains[d.name].usable]
        epochs = weave.adapter_epochs or scenario.train.epochs
        own = {d: a for d, (a, _) in self._train(
            {d: (self.start, epochs, True, "adapter") for d in merged}, "weave: own adapters"
        ).items()}  # fmt: skip
        hybrids = self._weave_hybrids([
            Hybrid(t, s) for t in weave.targets for s in scenario.weave_sources(t)
            if t in merged and s in merged
        ], own, epochs)  # fmt: skip
        models: Models = {}
        alpha = weave.alpha
        for domain, adapter in own.items():
            models[adapter_label(domain)] = ("adapter", None, fold_adapter(self.theta0, adapter,
                                                                           alpha))  # fmt: skip
        for hybrid, adapter in hybrids.items():
            models[hybrid_label(hybrid.target, hybrid.source)] = (
                "adapter", None, fold_adapter(self.theta0, adapter, alpha))  # fmt: skip
        targets: dict[str, Any] = {}
        for target in weave.targets:
            targets[target] = self._fuse_target(target, own, hybrids, models)
        plain = self._fuse(list(own), {d: models[adapter_label(d)][2] for d in own},
                           {d: d for d in own}, plain_merge_label)  # fmt: skip
        for label, weights in plain.items():
            models[label] = ("adapter", None, weights)
        fedavg = self._fedavg(merged) if weave.fedavg_rounds else None
        if fedavg is not None:
            models[fedavg_adapter_label()] = ("adapter", None,
                                              fold_adapter(self.theta0, fedavg, alpha))  # fmt: skip
        adapter_bytes = weights_nbytes(self.start)
        info = {
            "targets": targets,
            "own_adapters": sorted(own),
            "plain_merge": sorted(plain),
            "fedavg": fedavg_adapter_label() if fedavg is not None else None,
            "rank": weave.rank, "alpha": alpha, "layers": list(weave.layers),
            "rounds": weave.rounds, "epochs_per_visit": weave.epochs_per_visit,
            "schedule": weave.schedule, "hybrid_start": weave.hybrid_start,
            "finish_on_target": weave.finish_on_target,
            "adapter_parameters": int(sum(a.size for a in self.start.values())),
            "adapter_bytes": adapter_bytes,
            "model_bytes": weights_nbytes(self.theta0),
            "steps": self.steps,
        }  # fmt: skip
        return models, info

    def _weave_hybrids(
        self, hybrids: list[Hybrid], own: Mapping[str, Weights], adapter_epochs: int
    ) -> dict[Hybrid, Weights]:
        """Weave every hybrid by its visits (then, with ``finish_on_target``, one
        early-stopped visit to its target); a hybrid whose visit fails is dropped
        (reported), the others go on."""
        weave = self.weave
        current: dict[Hybrid, Weights] = {}
        for hybrid in hybrids:
            if weave.hybrid_start == "target":
                if hybrid.target not in own:
                    self.server._fail(PHASE, f"hybrid {hybrid.key} not woven: it starts from "
                                      f"'{hybrid.target}''s own adapter, which did not arrive",
                                      hybrid.target)  # fmt: skip
                    continue
                current[hybrid] = own[hybrid.target]
            else:
                current[hybrid] = self.start
        for step in pack_steps(list(current), weave.rounds, weave.schedule):
            self._visit(current, step.visits, weave.epochs_per_visit, False, f"step {step.index}")
        if weave.finish_on_target:
            by_target: dict[str, list[Hybrid]] = {}
            for hybrid in current:
                by_target.setdefault(hybrid.target, []).append(hybrid)
            for i in range(max((len(v) for v in by_target.values()), default=0)):
                visits = {t: (hs[i], 0) for t, hs in by_target.items() if i < len(hs)}
                self._visit(current, visits, adapter_epochs, True, f"finish {i + 1}")
        return current

    def _visit(
        self,
        current: dict[Hybrid, Weights],
        visits: Mapping[str, tuple[Hybrid, int]],
        epochs: int,
        early_stopping: bool,
        name: str,
    ) -> None:
        """One grid step of weaving: each domain trains the hybrid it is given."""
        jobs = {
            domain: (current[h], epochs, early_stopping, f"weave {h.key} {name}")
            for domain, (h, _) in visits.items() if h in current
        }  # fmt: skip
        if not jobs:
            return
        trained = self._train(jobs, f"weave: {name}")
        for domain, (hybrid, _) in visits.items():
            if hybrid not in current:
                continue
            if domain in trained:
                current[hybrid] = trained[domain][0]
            else:
                del current[hybrid]
                self.server._fail(PHASE, f"hybrid {hybrid.key} dropped: its visit to "
                                  f"'{domain}' failed", domain)  # fmt: skip

    def _fuse_target(
        self, target: str, own: Mapping[str, Weights], hybrids: Mapping[Hybrid, Weights],
        models: Models,
    ) -> dict[str, Any]:  # fmt: skip
        """The target's adapter and hybrids fused by every fusion merge; its facts."""
        sources = self.scenario.weave_sources(target)
        parts: dict[str, Weights] = {}
        catalogue: dict[str, str] = {}
        if target in own:
            parts[target] = models[adapter_label(target)][2]
            catalogue[target] = target
        for hybrid in hybrids:
            if hybrid.target == target:
                parts[hybrid.key] = models[hybrid_label(target, hybrid.source)][2]
                catalogue[hybrid.key] = target  # a hybrid serves the target's catalogue
        fused: dict[str, Weights] = {}
        if len(parts) >= 2:
            fused = self._fuse(list(parts), parts, catalogue,
                               lambda fusion: fused_label(target, fusion))  # fmt: skip
        else:
            self.server._fail("weave", f"target '{target}': {len(parts)} adapter(s) "
                              "arrived, fusion needs 2 or more", target)  # fmt: skip
        for label, weights in fused.items():
            models[label] = ("weave", None, weights)
        return {
            "sources": sources,
            "target_only": adapter_label(target) if target in own else None,
            "source_only": {s: adapter_label(s) for s in sources if s in own},
            "hybrids": {h.source: hybrid_label(target, h.source) for h in hybrids
                        if h.target == target},
            "fused": sorted(fused),
        }  # fmt: skip

    def _fuse(
        self,
        order: list[str],
        parts: Mapping[str, Weights],
        catalogue: Mapping[str, str],
        name: Callable[[str], str],
    ) -> dict[str, Weights]:
        """Every ``weave.fusion`` merge over ``parts`` (adapted models keyed by
        ``order``; ``catalogue``: whose catalogue each one's learned merge uses)."""
        server = self.server
        inputs = MergeInputs(
            models=parts,
            item_embeddings={k: server.item_embeddings[catalogue[k]] for k in order
                             if catalogue[k] in server.item_embeddings},
            item_texts={k: server.item_texts[catalogue[k]] for k in order
                        if catalogue[k] in server.item_texts},
            mean_lengths={k: server._mean_length(catalogue[k]) for k in order},
            text_dim=server.text_dim or 0,
        )  # fmt: skip
        merged, infos = run_merges(self.scenario, self.theta0, order, inputs,
                                   lambda reason: server._fail(PHASE, reason),
                                   specs=self.weave.fusion)  # fmt: skip
        out = {name(label): weights for label, weights in merged.items()}
        for info in infos:
            info["label"] = name(info["label"])
            info["weave"] = True
            server.merge_info.append(info)
        return out

    def _fedavg(self, merged: list[str]) -> Weights | None:
        """FedAvg of adapters: A and B averaged (weighted by training sequences), as
        federated LoRA does, for ``weave.fedavg_rounds`` rounds."""
        adapter: Weights = self.start
        for round_number in range(1, self.weave.fedavg_rounds + 1):
            trained = self._train(
                {d: (adapter, self.weave.epochs_per_visit, False, f"adapter fedavg {round_number}")
                 for d in merged}, f"weave: adapter fedavg {round_number}")  # fmt: skip
            if not trained:
                self.server._fail(PHASE, f"adapter FedAvg round {round_number}: no adapter")
                return None
            total = sum(size for _, size in trained.values())
            adapter = {
                key: sum(a[key] * (size / total) for a, size in trained.values()).astype(
                    np.float32)
                for key in adapter
            }  # fmt: skip
        return adapter


def _added(after: Mapping[int, int], before: Mapping[int, int]) -> int:
    """Bytes counted since ``before`` over every node."""
    return int(sum(v - before.get(k, 0) for k, v in after.items()))
