"""The merge server's workflow (ServerApp ``main``): it sees weights, item-text
embeddings (and, for a text-encoder model with a learned merge, the item texts) and
scalar metrics, never an interaction.

1. connect: wait for one node per domain;
2. describe: each node prepares its domain and says which one it holds;
3. base: make θ0 (seeded, optionally followed by FedAvg rounds);
4. fine-tune: every merged domain trains from θ0 and uploads its model;
5. merge: run the scenario's merge methods on the uploaded models;
6. evaluate: θ0, every individual model and every merge on every domain node
   (unseen domains included: zero-shot transfer);
7. write the run directory (results.json/.csv, report.md, plots), atomically.

Every reply is validated (:mod:`silorec.wire.replies`) before it is used: a reply that
is malformed or hostile (missing or extra records and keys, wrong dtypes or shapes,
NaN/Inf, metric names outside the allow-list, sizes that disagree with the node's
describe reply, a task vector whose norm is an outlier) is rejected with its reason.
A failure counts for its phase only: the domain is left out of that phase's output
(its model, its FedAvg contribution, its metrics) and takes part in the others. Only a
node that does not answer at all, or never described a domain, is left out of every
later phase (a missing reply, or the SuperLink's error for an unavailable node). The
run continues while at least ``federation.min_domains`` domain
models remain, and results are always written.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.serverapp import Grid

from silorec.apps.evaluation_plan import evaluation_plan, references
from silorec.apps.exchange import Exchange, NodeFailure
from silorec.apps.merge_phase import MergeInputs, run_merges
from silorec.apps.payload import payload_of
from silorec.apps.records import weights_to_record
from silorec.apps.run_config import (
    ENGINE,
    EVALUATE_FROM,
    INPROCESS_ENGINE,
    STATE_RECORD,
    STATE_RUN_DIR,
    node_binding,
    scenario_from_run_config,
)
from silorec.apps.server_output import (
    MODELS_DIR,
    paired_entries,
    result_rows,
    run_dir_for,
    save_models,
    software_versions,
)
from silorec.apps.weave_phase import WeavePhase
from silorec.audit.log import AUDIT_DIR, SERVER_AUDIT_LOG, AuditLog
from silorec.logs import get_logger
from silorec.merging.fedavg import weighted_average
from silorec.models import (
    Weights,
    build_model,
    get_weights,
    weight_spec,
)
from silorec.provenance import save_merge_inputs, write_card
from silorec.provenance.merge_inputs import MERGE_INPUTS_DIR, saved_models
from silorec.results import (
    BASE_LABEL,
    FEDAVG_LABEL,
    Failure,
    NodeRecord,
    ResultRow,
    RunResults,
    individual_label,
    load_run,
    now_iso,
    write_run,
    write_text_atomic,
)
from silorec.runtime import use_deterministic_algorithms
from silorec.scenario import Scenario
from silorec.wire import protocol
from silorec.wire.replies import (
    DescribeReply,
    ReplyRejected,
    Screening,
    TrainReply,
    clipped,
    read_describe,
    read_evaluate,
    read_train,
    screen_task_vectors,
)

log = get_logger("silorec.server")

SERVER_LOG = "server.log"
SCENARIO_COPY = "scenario.toml"


class RunAborted(RuntimeError):
    """The run cannot go on (e.g. too few domain models to merge)."""


@dataclass
class DomainState:
    """The server's view of one domain and the node serving it.

    ``status``/``error`` say how its last failure ended (for the report); ``gone``
    alone takes it out of later phases: its node never described the domain, or did
    not answer at all. A rejected or refused reply costs the domain that phase only.
    """

    name: str
    role: str  # "merged" | "unseen"
    node_id: int | None = None
    status: str = "ok"  # "ok" | "failed" | "rejected"
    error: str | None = None
    gone: bool = False
    described: DescribeReply | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.node_id is not None and not self.gone


class MergeServer:
    """One run of the merge server over a Flower ``Grid``."""

    def __init__(
        self,
        grid: Grid,
        scenario: Scenario,
        scenario_text: str,
        run_dir: Path,
        engine: str,
        binding: Mapping[str, int] | None = None,
        evaluate_from: Path | None = None,
    ) -> None:
        use_deterministic_algorithms()  # learned merges train on the server
        self.scenario = scenario
        self.scenario_text = scenario_text
        self.run_dir = run_dir
        self.engine = engine
        # The server's side of the audit trail: every message sent, every reply received.
        # Always on, as the nodes' own logs are: the scenario has no say.
        self.exchange = Exchange(grid, AuditLog(run_dir / AUDIT_DIR / SERVER_AUDIT_LOG))
        self.domains = {
            d.name: DomainState(d.name, "unseen" if d.unseen else "merged")
            for d in scenario.domains
        }
        self.failures: list[Failure] = []
        self.timings: dict[str, float] = {}
        self.base_info: dict[str, Any] = {}
        self.baseline_info: dict[str, Any] = {}
        self.merge_info: list[dict[str, Any]] = []
        self.weave_info: dict[str, Any] = {}
        self.rows: list[ResultRow] = []
        self.paired: list[dict[str, Any]] = []
        self.text_dim: int | None = None
        self.item_embeddings: dict[str, np.ndarray] = {}
        # Each domain's catalogue embeddings as first uploaded: later train requests
        # name their hash, and the node does not send them again.
        self.catalogues: dict[str, np.ndarray] = {}
        self.item_texts: dict[str, list[str]] = {}
        self.upload_info: dict[str, Any] = {}  # task-vector screening, see fine_tune
        self.merge_inputs: dict[str, Weights] = {}
        self.merge_order: list[str] = []
        self.binding: dict[str, int] = dict(binding or {})
        self.evaluate_from = evaluate_from
        self.derived_from: dict[str, Any] = {}
        self.started_at = now_iso()

    # -- bookkeeping -----------------------------------------------------------

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        log.info("== %s", name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)

    def _fail(
        self,
        phase: str,
        reason: str,
        domain: str | None = None,
        node_id: int | None = None,
        status: str = "failed",
        gone: bool = False,
    ) -> None:
        """Record a failure of ``phase``; with ``gone`` the domain's node is taken out of
        every later phase (it did not answer), else of this phase only."""
        self.failures.append(Failure(phase=phase, domain=domain, node_id=node_id, reason=reason))
        if domain is not None and domain in self.domains:
            state = self.domains[domain]
            state.status, state.error = status, f"{phase}: {reason}"
            state.gone = state.gone or gone
        where = f"domain '{domain}'" if domain else f"node {node_id}" if node_id else "the server"
        log.warning("%s failed in %s: %s", where, phase, reason)

    def _usable(self, role: str | None = None) -> list[DomainState]:
        return [s for s in self.domains.values() if s.usable and (role is None or s.role == role)]

    def _round(
        self,
        domains: list[DomainState],
        message_type: str,
        make: Callable[[DomainState], RecordDict],
        *,
        timeout: float,
        phase: str,
    ) -> dict[str, RecordDict]:
        """One message per domain; failures recorded; the successful replies by domain."""
        requests = {s.node_id: make(s) for s in domains if s.node_id is not None}
        by_node = {s.node_id: s for s in domains}
        replies: dict[str, RecordDict] = {}
        log.info("%s: %d message(s) sent, waiting up to %g s", phase, len(requests), timeout)
        started = time.perf_counter()
        for node_id, outcome in self.exchange.round(
            requests, message_type, timeout=timeout, group=phase
        ).items():
            state = by_node[node_id]
            if isinstance(outcome, NodeFailure):
                self._fail(phase, outcome.reason, state.name, node_id, gone=outcome.silent)
            else:
                replies[state.name] = outcome
        log.info("%s: %d of %d domain(s) replied in %.1f s", phase, len(replies), len(requests),
                 time.perf_counter() - started)  # fmt: skip
        return replies

    # -- phases ----------------------------------------------------------------

    def connect_and_describe(self) -> None:
        """Find the node of every domain; each node prepares its data meanwhile."""
        with self._phase("connect"):
            fed = self.scenario.federation
            node_ids = self.exchange.wait_for_nodes(len(self.domains), fed.connect_timeout_s)
            log.info("%d node(s) connected for %d domain(s)", len(node_ids), len(self.domains))
        with self._phase("describe"):
            outcome = self.exchange.round(
                {n: RecordDict({protocol.CONFIG: ConfigRecord({})}) for n in node_ids},
                protocol.DESCRIBE,
                timeout=self.scenario.federation.describe_timeout_s,
                group="describe",
            )
            claims: dict[str, list[tuple[int, DescribeReply]]] = {}
            for node_id, reply in sorted(outcome.items()):
                if isinstance(reply, NodeFailure):
                    self._fail("describe", reply.reason, node_id=node_id)
                    continue
                try:
                    described = read_describe(payload_of(reply))
                except ReplyRejected as exc:
                    self._fail("describe", f"rejected reply: {exc}", node_id=node_id,
                               status="rejected")  # fmt: skip
                    continue
                claims.setdefault(described.domain, []).append((node_id, described))
            self._assign(claims)
            for state in self.domains.values():
                if state.node_id is None and not state.gone:
                    self._fail("describe", "no node serves this domain", state.name, gone=True)
            self._agree_on_text_dim()

    def _assign(self, claims: Mapping[str, list[tuple[int, DescribeReply]]]) -> None:
        """Give each domain its node. A domain bound to a node (``federation.node_ids``,
        or the engine's binding) is served by that node only; an unbound domain
        claimed by several nodes by none of them: a squatter never displaces the
        real node, and is refused with the reason."""
        binding = {**self.binding, **self.scenario.federation.node_ids}
        for name, claimants in claims.items():
            state = self.domains.get(name)
            if state is None:
                for node_id, _ in claimants:
                    self._fail("describe", f"node claims unknown domain '{name}'",
                               node_id=node_id, status="rejected")  # fmt: skip
                continue
            bound = binding.get(name)
            if bound is not None:
                accepted = [(n, d) for n, d in claimants if n == bound]
                for node_id, _ in claimants:
                    if node_id != bound:
                        self._fail("describe", f"node {node_id} claims domain '{name}', "
                                   f"which is bound to node {bound}: refused",
                                   node_id=node_id, status="rejected")  # fmt: skip
            elif len(claimants) > 1:
                ids = ", ".join(str(n) for n, _ in claimants)
                for node_id, _ in claimants:
                    self._fail("describe", f"domain '{name}' is claimed by nodes {ids}; "
                               "without a binding (federation.node_ids) none of them "
                               "serves it", node_id=node_id, status="rejected")  # fmt: skip
                accepted = []
            else:
                accepted = list(claimants)
            if not accepted:
                continue
            node_id, described = accepted[0]
            if described.unseen != (state.role == "unseen"):
                self._fail("describe", f"node {node_id} says domain '{name}' is "
                           f"{'unseen' if described.unseen else 'merged'}, the scenario "
                           f"says {state.role}", name, node_id, status="rejected",
                           gone=True)  # fmt: skip
                continue
            state.node_id, state.described = node_id, described
            state.info.update(described.stats)
            log.info("node %d serves %s domain '%s' (%d users, %d items)", node_id,
                     state.role, name, described.n_users, described.n_items)  # fmt: skip

    def _agree_on_text_dim(self) -> None:
        dims = [s.described.text_dim for s in self._usable() if s.described is not None]
        if not dims:
            raise RunAborted("no domain node is available")
        self.text_dim = max(set(dims), key=dims.count)
        for state in self._usable():
            assert state.described is not None
            if state.described.text_dim != self.text_dim:
                self._fail(
                    "describe",
                    f"text embeddings of size {state.described.text_dim}"
                    f", the others have {self.text_dim}",
                    state.name,
                    status="rejected",
                    gone=True,
                )

    def make_base(self) -> Weights:
        """θ0: a seeded initialisation, optionally refined by FedAvg rounds."""
        with self._phase("base"):
            settings = self.scenario.base
            assert self.text_dim is not None
            theta = get_weights(build_model(self.scenario.model, self.text_dim, settings.seed))
            self.base_info = {"init": settings.init, "seed": settings.seed}
            # What the seeded model starts as, where it is not a random initialisation.
            if self.scenario.model.kind == "text-encoder":
                self.base_info["start"] = "pretrained all-MiniLM-L6-v2"
            elif self.scenario.model.init == "identity":
                self.base_info["start"] = "identity initialisation (ranks by text similarity)"
            if settings.init == "fedavg":
                theta, rounds = self._fedavg(
                    theta, settings.fedavg_rounds, settings.fedavg_local_epochs, "warm-up"
                )
                self.base_info.update(
                    {"fedavg_rounds": settings.fedavg_rounds,
                     "fedavg_local_epochs": settings.fedavg_local_epochs, "rounds": rounds}
                )  # fmt: skip
            return theta

    def fedavg_baseline(self, theta0: Weights) -> Weights | None:
        """FedAvg from θ0 for the scenario's rounds, as a reference model; its rounds
        and the bytes it moved are recorded."""
        settings = self.scenario.baselines
        if settings.fedavg_rounds == 0:
            return None
        with self._phase("fedavg"):
            sent, received = (
                sum(self.exchange.bytes_sent.values()),
                sum(self.exchange.bytes_received.values()),
            )
            try:
                theta, rounds = self._fedavg(
                    theta0, settings.fedavg_rounds, settings.fedavg_local_epochs, "fedavg"
                )
            except RunAborted as exc:
                self._fail("fedavg", str(exc))
                return None
            self.baseline_info["fedavg"] = {
                "rounds": settings.fedavg_rounds,
                "local_epochs": settings.fedavg_local_epochs,
                "bytes_sent": sum(self.exchange.bytes_sent.values()) - sent,
                "bytes_received": sum(self.exchange.bytes_received.values()) - received,
                "per_round": rounds,
            }
            return theta

    def _fedavg(
        self, theta: Weights, rounds: int, local_epochs: int, label: str
    ) -> tuple[Weights, list[dict[str, Any]]]:
        """``rounds`` FedAvg rounds from ``theta``: each merged domain trains
        ``local_epochs`` epochs, the server averages weighted by training sequences."""
        history: list[dict[str, Any]] = []
        for round_number in range(1, rounds + 1):
            log.info("FedAvg (%s) round %d/%d", label, round_number, rounds)
            replies = self._train_round(theta, "fedavg", local_epochs, early_stopping=False,
                                        group=f"{label}-{round_number}")  # fmt: skip
            if not replies:
                raise RunAborted(f"FedAvg ({label}) round {round_number}: no model came back")
            group = f"{label}-{round_number}"
            screened, screening = self._screen(theta, replies, group)
            if not screened:
                raise RunAborted(f"FedAvg ({label}) round {round_number}: no model accepted")
            # Sizes are validated against each node's describe reply (read_train).
            sizes = {d: float(replies[d].n_train_sequences) for d in screened}
            theta = weighted_average(screened, sizes)
            history.append(
                {"round": round_number, "domains": sorted(screened), "train_sequences": sizes,
                 "clip_scale": {d: round(c, 6) for d, c in screening.scale.items() if c < 1.0}}
            )  # fmt: skip
        return theta, history

    def _train_round(
        self, theta: Weights, phase: str, epochs: int, *, early_stopping: bool, group: str
    ) -> dict[str, TrainReply]:
        """Send ``theta`` to every usable merged domain to train; returns the valid
        replies by domain. A malformed reply is rejected, for this round only."""
        config = {
            protocol.PHASE: phase,
            protocol.EPOCHS: epochs,
            protocol.EARLY_STOPPING: early_stopping,
        }
        theta_record = weights_to_record(theta)

        def request(state: DomainState) -> RecordDict:
            held = self.catalogues.get(state.name)
            held_hash = "" if held is None else protocol.catalogue_sha256(held)
            own = ConfigRecord({**config, protocol.CATALOGUE_SHA256: held_hash})
            return RecordDict({protocol.CONFIG: own, protocol.WEIGHTS: theta_record})

        replies = self._round(
            self._usable("merged"),
            protocol.TRAIN,
            request,
            timeout=self.scenario.federation.train_timeout_s,
            phase=group,
        )
        expected = weight_spec(theta)
        valid: dict[str, TrainReply] = {}
        for name, reply in replies.items():
            described = self.domains[name].described
            assert described is not None  # only described domains are usable
            try:
                valid[name] = read_train(
                    payload_of(reply),
                    domain=name,
                    weights=expected,
                    described=described,
                    item_texts=self.scenario.uploads_item_texts,
                    held_embeddings=self.catalogues.get(name),
                )
            except ReplyRejected as exc:
                self._fail(group, f"rejected upload: {exc}", name, status="rejected")
                continue
            self.catalogues.setdefault(name, valid[name].item_embeddings)
        return valid

    def _screen(
        self, start: Weights, replies: Mapping[str, TrainReply], phase: str
    ) -> tuple[dict[str, Weights], Screening]:
        """The uploads of one training round, screened against the weights they were
        trained from (:func:`~silorec.wire.replies.screen_task_vectors`): outliers
        rejected (for this phase), the others clipped. Used for every round, FedAvg's
        included, so one inflated update can steer neither θ0 nor a merge."""
        federation = self.scenario.federation
        screening = screen_task_vectors(
            start,
            {name: reply.weights for name, reply in replies.items()},
            outlier_ratio=federation.max_task_vector_norm_ratio,
            clip_ratio=federation.clip_task_vector_norm_ratio,
        )
        for name, reason in screening.rejected.items():
            self._fail(phase, f"rejected upload: {reason}", name, status="rejected")
        screened = {
            name: clipped(start, reply.weights, screening.scale[name])
            for name, reply in replies.items()
            if name not in screening.rejected
        }
        return screened, screening

    def fine_tune(self, theta0: Weights) -> dict[str, Weights]:
        """Every merged domain fine-tunes θ0 locally and uploads its model."""
        with self._phase("fine-tune"):
            replies = self._train_round(
                theta0, "finetune", 0, early_stopping=True, group="fine-tune"
            )
            self.merge_inputs, screening = self._screen(theta0, replies, "fine-tune")
            models: dict[str, Weights] = {}
            for name, reply in replies.items():
                if name in screening.rejected:
                    continue
                models[name] = reply.weights
                self.item_embeddings[name] = reply.item_embeddings
                if reply.item_texts is not None:
                    self.item_texts[name] = reply.item_texts
                self.domains[name].info.update(reply.metrics)
            self.upload_info = {
                "task_vector_norms": {d: round(n, 6) for d, n in screening.norms.items()},
                "clip_scale": {d: round(c, 6) for d, c in screening.scale.items() if c < 1.0},
            }
            log.info("fine-tuned models received from: %s", ", ".join(sorted(models)) or "none")
            return models

    def merge(self, theta0: Weights, individual: Mapping[str, Weights]) -> dict[str, Weights]:
        """Run every merge method of the scenario on the uploaded models (the screened,
        clipped task vectors, see :meth:`fine_tune`); :mod:`silorec.apps.merge_phase`."""
        with self._phase("merge"):
            minimum = self.scenario.federation.min_domains
            if len(individual) < minimum:
                raise RunAborted(
                    f"only {len(individual)} domain model(s) arrived, federation.min_domains "
                    f"is {minimum}: not merging"
                )
            assert self.text_dim is not None
            order = [d.name for d in self.scenario.merged_domains if d.name in individual]
            inputs = MergeInputs(
                models=self.merge_inputs,
                item_embeddings=self.item_embeddings,
                item_texts=self.item_texts,
                mean_lengths={name: self._mean_length(name) for name in order},
                text_dim=self.text_dim,
                upload_info=self.upload_info,
            )
            merged, infos = run_merges(self.scenario, theta0, order, inputs,
                                       lambda reason: self._fail("merge", reason))  # fmt: skip
            self.merge_info.extend(infos)
            self.merge_order = order
            return merged

    def weave(self, theta0: Weights) -> dict[str, tuple[str, str | None, Weights]]:
        """WeaveRec without pooling (:mod:`silorec.apps.weave_phase`); a failure of the
        phase as a whole is recorded and costs only its models."""
        with self._phase("weave"):
            try:
                models, self.weave_info = WeavePhase(self, theta0).run()
            except Exception as exc:  # noqa: BLE001 - the other models are still evaluated
                self._fail("weave", f"{type(exc).__name__}: {exc}")
                return {}
            return models

    def _mean_length(self, name: str) -> float:
        """A domain's interactions per user from its describe reply (0: unknown)."""
        described = self.domains[name].described
        return (described.mean_length if described else None) or 0.0

    def evaluate(self, models: Mapping[str, tuple[str, str | None, Weights]]) -> None:
        """Evaluate the models on every usable domain, as the evaluation plan says
        (:mod:`silorec.apps.evaluation_plan`: each merged domain its own, θ0, the merges
        and a sample of the other individual models; pair sums against θ0 and the
        merges only); fills :attr:`rows`. ``models`` maps a label to ``(kind, source,
        weights)``."""
        with self._phase("evaluate"):
            settings = self.scenario.evaluation
            splits = list(settings.splits)
            usable = self._usable()
            plan = evaluation_plan(
                models,
                [(s.name, s.role) for s in self.domains.values()],
                settings.cross_domain_models,
                settings.users_seed,
                settings.unseen_source_models,
            )
            records = {label: weights_to_record(w) for label, (_, _, w) in models.items()}
            sent = sum(len(plan[s.name]) for s in usable)
            log.info("evaluating %d model(s) on %d domain(s): %d evaluations (full matrix: %d)",
                     len(models), len(usable), sent, len(models) * len(usable))  # fmt: skip

            def content(state: DomainState) -> RecordDict:
                labels = plan[state.name]
                config = {protocol.SPLITS: splits, protocol.LABELS: labels,
                          protocol.REFERENCES: references(models, labels)}  # fmt: skip
                out = RecordDict({protocol.CONFIG: ConfigRecord(config)})
                for label in labels:
                    out[f"{protocol.MODEL_PREFIX}{label}"] = records[label]
                return out

            replies = self._round(
                usable,
                protocol.EVALUATE,
                content,
                timeout=self.scenario.federation.eval_timeout_s,
                phase="evaluate",
            )
            ks = list(settings.ks)
            for domain, reply in replies.items():
                labels = plan[domain]
                try:
                    result = read_evaluate(payload_of(reply), domain=domain, labels=labels,
                                           splits=splits, ks=ks)  # fmt: skip
                except ReplyRejected as exc:
                    self._fail("evaluate", f"rejected reply: {exc}", domain, status="rejected")
                    continue
                for dropped in result.dropped:
                    self._fail("evaluate", f"dropped a value that is not a valid metric: "
                               f"{dropped}", domain, status="rejected")  # fmt: skip
                role = self.domains[domain].role
                evaluated = {label: models[label] for label in labels}
                self.rows.extend(result_rows(domain, role, result, evaluated, splits))
                self.paired.extend(paired_entries(domain, result.pairs, labels, splits))

    # -- the whole run ---------------------------------------------------------

    def run(self) -> RunResults:
        """All phases; whatever happens, a results directory is written."""
        if self.evaluate_from is not None:
            return self._guarded(lambda: self._evaluation_round(self.evaluate_from))
        return self._guarded(self._train_merge_evaluate)

    def _guarded(self, phases: Callable[[], str]) -> RunResults:
        """Run ``phases`` (returns the run's status); a :class:`RunAborted` fails the
        run with its reason, anything else is recorded, written and raised."""
        try:
            status = phases()
        except RunAborted as exc:
            self._fail("run", str(exc))
            status = "failed"
        except Exception as exc:
            self._fail("run", f"{type(exc).__name__}: {exc}")
            self._write(self._results("failed"))
            raise
        results = self._results(status)
        self._write(results)
        return results

    def _train_merge_evaluate(self) -> str:
        status = "completed"
        self.connect_and_describe()
        theta0 = self.make_base()
        individual = self.fine_tune(theta0)
        models: dict[str, tuple[str, str | None, Weights]] = {BASE_LABEL: ("base", None, theta0)}
        for name, weights in individual.items():
            models[individual_label(name)] = ("individual", name, weights)
        try:
            merged = self.merge(theta0, individual)
        except RunAborted as exc:
            self._fail("merge", str(exc))
            status, merged = "failed", {}
        for label, weights in merged.items():
            models[label] = ("merge", None, weights)
        if self.scenario.weave.enabled:
            models.update(self.weave(theta0))
        fedavg = self.fedavg_baseline(theta0)
        if fedavg is not None:
            models[FEDAVG_LABEL] = ("fedavg", None, fedavg)
        if self.scenario.output.save_models:
            save_models(self.run_dir, models)
            self._save_merge_inputs(individual)
        self.evaluate(models)
        return status

    def _evaluation_round(self, source: Path) -> str:
        """Evaluate the models of a re-merged run (``silorec merge add|remove``) on the
        nodes, training nothing: this run becomes that run, evaluated. Domains take
        the roles the re-merge gave them (a domain that left is now unseen)."""
        derived = load_run(source)
        if not derived.derived_from:
            raise RunAborted(f"{source}: not a run written by `silorec merge add|remove`")
        models = saved_models(source)
        self.connect_and_describe()
        recorded = {n.domain: n for n in derived.nodes}
        for name, state in self.domains.items():
            if name in recorded:
                state.role = recorded[name].role
                state.info = {**recorded[name].info, **state.info}
        self.merge_info, self.base_info = list(derived.merges), dict(derived.base)
        self.baseline_info = dict(derived.baselines)
        for folder in (MODELS_DIR, MERGE_INPUTS_DIR):
            shutil.copytree(source / folder, self.run_dir / folder)
        self.evaluate(models)
        self.derived_from = {**derived.derived_from, "evaluated": True,
                             "evaluated_by": self.engine}  # fmt: skip
        return "completed"

    def _save_merge_inputs(self, uploads: Mapping[str, Weights]) -> None:
        """Keep what the merges were made from (``merge-inputs/``), so that ``silorec
        replay`` can recompute them and domains can join or leave without retraining."""
        if not self.merge_order or self.text_dim is None:
            return
        save_merge_inputs(
            self.run_dir,
            self.merge_order,
            self.merge_inputs,
            uploads,
            self.item_embeddings,
            self.item_texts,
            {name: self._mean_length(name) for name in self.merge_order},
            self.text_dim,
        )

    def _results(self, status: str) -> RunResults:
        return RunResults(
            run_id=self.run_dir.name,
            scenario_name=self.scenario.name,
            scenario=self.scenario.model_dump(mode="json", by_alias=True),
            scenario_toml=self.scenario_text,
            engine=self.engine,
            status=status,
            versions=software_versions(),
            seeds={
                "scenario": self.scenario.seed,
                "train": self.scenario.train.seed,
                "base": self.scenario.base.seed,
            },
            started_at=self.started_at,
            finished_at=now_iso(),
            timings=self.timings,
            nodes=[
                NodeRecord(
                    domain=s.name,
                    node_id=s.node_id,
                    role=s.role,
                    status=s.status,
                    error=s.error,
                    bytes_sent=self.exchange.bytes_sent.get(s.node_id, 0),
                    bytes_received=self.exchange.bytes_received.get(s.node_id, 0),
                    info=s.info,
                )
                for s in self.domains.values()
            ],
            failures=self.failures,
            merges=self.merge_info,
            base=self.base_info,
            baselines=self.baseline_info,
            paired=self.paired,
            rows=self.rows,
            weave=self.weave_info,
            derived_from=self.derived_from,
        )

    def _write(self, results: RunResults) -> None:
        with self._phase("write"):
            written = write_run(results, self.run_dir, plots=self.scenario.output.plots)
            try:
                written += write_card(self.run_dir)
            except Exception as exc:  # noqa: BLE001 - the results are written; say why not the card
                log.warning("merge card not written: %s: %s", type(exc).__name__, exc)
        log.info(
            "results (%s) written to %s: %s",
            results.status,
            self.run_dir,
            ", ".join(p.name for p in written),
        )


def run_merge_server(grid: Grid, context: Context, app_dir: Path) -> RunResults:
    """ServerApp ``main``: load the scenario, make the run directory, run, write."""
    scenario, text, source = scenario_from_run_config(context.run_config, app_dir)
    run_dir = run_dir_for(context.run_config, scenario.name)
    context.state[STATE_RECORD] = ConfigRecord({STATE_RUN_DIR: str(run_dir)})
    write_text_atomic(run_dir / SCENARIO_COPY, text)
    handler = logging.FileHandler(run_dir / SERVER_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    get_logger().addHandler(handler)
    try:
        log.info(
            "scenario '%s' (%s), %d domains, run directory %s",
            scenario.name,
            source,
            len(scenario.domains),
            run_dir,
        )
        engine = str(context.run_config.get(ENGINE, "flower"))
        if scenario.baselines.joint and engine != INPROCESS_ENGINE:
            log.warning(
                "baselines.joint is skipped on the '%s' engine: the Joint oracle pools "
                "the domains' data, which only the in-process engine (silorec run) may do",
                engine,
            )
        if scenario.weave.pooled_oracles and engine != INPROCESS_ENGINE:
            log.warning(
                "weave.pooled_oracles is skipped on the '%s' engine: the oracles pool the "
                "domains' data, which only the in-process engine (silorec run) may do",
                engine,
            )
        binding = node_binding(context.run_config)
        evaluate_from = str(context.run_config.get(EVALUATE_FROM, "") or "")
        results = MergeServer(
            grid, scenario, text, run_dir, engine, binding,
            evaluate_from=Path(evaluate_from).resolve() if evaluate_from else None,
        ).run()  # fmt: skip
    finally:
        get_logger().removeHandler(handler)
        handler.close()
    if results.status != "completed":
        raise RuntimeError(
            f"run failed, see {run_dir / 'report.md'}: "
            + "; ".join(f.reason for f in results.failures[-3:])
        )
    return results
