"""Every malformed or hostile reply fails safe, through the in-process engine.

One domain node ('beta', partition 1) runs the real ClientApp, guard included, and
then changes its reply on the way out, as a node running modified code could: what
the merge server receives has passed no guard. Each case asserts that the run
completed for the honest domains, that beta is marked failed for the phase it broke
with a readable reason, and that results.json was written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord

from silorec.apps.run_config import NODE_BINDING, binding_text
from silorec.engine.inprocess import FIRST_NODE_ID, ServerAppFailed, run_apps
from silorec.engine.project import find_project
from silorec.results import load_run
from silorec.wire import protocol

HERE = Path(__file__).parent
TINY = HERE / "scenarios" / "tiny.toml"
HOSTILE = 1  # partition of 'beta'
HONEST = ["alpha", "gamma"]
DOMAINS = ["alpha", "beta", "gamma", "delta"]
MERGES = ["average", "task_arithmetic(lambda=0.3)"]

Tamper = Callable[[Message], None]


def fast_scenario(tmp_path: Path, *, fedavg_rounds: int = 0) -> Path:
    """The tiny scenario with two merges (and optionally a FedAvg baseline)."""
    text = TINY.read_text()
    head = text[: text.index("[[merges]]")]
    domains = text[text.index("[[domains]]") :]
    merges = (
        '[[merges]]\nmethod = "average"\n\n[[merges]]\nmethod = "task_arithmetic"\nlambda = 0.3\n\n'
    )
    baseline = f"[baselines]\nfedavg_rounds = {fedavg_rounds}\n\n" if fedavg_rounds else ""
    path = tmp_path / "scenario.toml"
    path.write_text(head + baseline + merges + domains)
    return path


def run_hostile(
    tmp_path: Path,
    message_type: str,
    tamper: Tamper | None,
    *,
    group: str | None = None,
    bind: bool = True,
    fedavg_rounds: int = 0,
    scenario: Path | None = None,
    domains: list[str] = DOMAINS,
) -> Path:
    """Run with beta's (partition 1's) replies to ``message_type`` (of ``group``, if
    given) tampered; ``tamper`` None: an honest run."""
    project = find_project(HERE.parent)
    app = project.load(project.clientapp)
    scenario = scenario or fast_scenario(tmp_path, fedavg_rounds=fedavg_rounds)

    def client(message: Message, context: Context) -> Message:
        reply = app(message, context)
        meta = message.metadata
        if (
            tamper is not None
            and context.node_config["partition-id"] == HOSTILE
            and meta.message_type == message_type
            and (group is None or meta.group_id == group)
            and not reply.has_error()
        ):
            tamper(reply)
        return reply

    out = tmp_path / "run"
    run_config = {**project.run_config, "scenario": str(scenario), "run-dir": str(out),
                  "engine": "inprocess"}  # fmt: skip
    if bind:
        run_config[NODE_BINDING] = binding_text(
            {d: FIRST_NODE_ID + i for i, d in enumerate(domains)}
        )
    try:
        run_apps(project.load(project.serverapp), client, num_nodes=len(domains),
                 run_config=run_config)  # fmt: skip
    except ServerAppFailed:
        pass
    assert (out / "results.json").exists(), "results.json must always be written"
    return out


# -- tampering helpers --------------------------------------------------------------------


def drop_record(name: str) -> Tamper:
    def tamper(reply: Message) -> None:
        del reply.content[name]

    return tamper


def set_info(key: str, value: object) -> Tamper:
    def tamper(reply: Message) -> None:
        reply.content[protocol.INFO][key] = value

    return tamper


def set_metric(key: str, value: object, record: str = protocol.METRICS) -> Tamper:
    def tamper(reply: Message) -> None:
        if record not in reply.content:
            reply.content[record] = MetricRecord({})
        if value is None:
            del reply.content[record][key]
        else:
            reply.content[record][key] = value

    return tamper


def rename_pair(new_key: str) -> Tamper:
    """Replace one paired key by ``new_key`` (same count of keys)."""

    def tamper(reply: Message) -> None:
        record = reply.content[protocol.PAIRS]
        old = next(iter(record.keys()))
        record[new_key] = record.pop(old)

    return tamper


def edit_weights(edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Tamper:
    def tamper(reply: Message) -> None:
        record = reply.content[protocol.WEIGHTS]
        arrays = edit({k: v.numpy().copy() for k, v in record.items()})
        reply.content[protocol.WEIGHTS] = ArrayRecord({k: Array(v) for k, v in arrays.items()})

    return tamper


def cast(dtype: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    return lambda w: {k: v.astype(dtype) for k, v in w.items()}


def first(edit: Callable[[np.ndarray], np.ndarray]):
    def apply(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = next(iter(w))
        w[name] = edit(w[name])
        return w

    return apply


@dataclass
class Case:
    message_type: str
    tamper: Tamper
    phase: str
    reason: str
    gone: bool = False  # beta out of every later phase (no usable describe)
    group: str | None = None
    bind: bool = True
    fedavg_rounds: int = 0


CASES: dict[str, Case] = {
    # describe
    "describe: no info record": Case(protocol.DESCRIBE, drop_record(protocol.INFO), "describe",
                                     "missing record(s): 'info'", gone=True),
    "describe: no metrics record": Case(protocol.DESCRIBE, drop_record(protocol.METRICS),
                                        "describe", "missing record(s): 'metrics'", gone=True),
    "describe: extra info key": Case(protocol.DESCRIBE, set_info("note", "hello"), "describe",
                                     "unexpected key 'note'", gone=True),
    "describe: empty catalogue": Case(protocol.DESCRIBE, set_metric("n_items", 0.0), "describe",
                                      "metric 'n_items' is 0.0", gone=True),
    "describe: NaN users": Case(protocol.DESCRIBE, set_metric("n_users", math.nan), "describe",
                                "metric 'n_users' is nan", gone=True),
    "describe: metric outside the allow-list": Case(
        protocol.DESCRIBE, set_metric("item_4711", 4711.0), "describe",
        "metric 'item_4711' is not allowed", gone=True),
    "describe: unknown domain": Case(protocol.DESCRIBE, set_info("domain", "zeta"), "describe",
                                     "node claims unknown domain 'zeta'", gone=True),
    # fine-tune
    "train: no weights": Case(protocol.TRAIN, drop_record(protocol.WEIGHTS), "fine-tune",
                              "missing record(s): 'weights'"),
    "train: no item embeddings": Case(protocol.TRAIN, drop_record(protocol.ITEM_EMBEDDINGS),
                                      "fine-tune", "missing record(s): 'item_embeddings'"),
    "train: no metrics": Case(protocol.TRAIN, drop_record(protocol.METRICS), "fine-tune",
                              "missing record(s): 'metrics'"),
    "train: extra record": Case(
        protocol.TRAIN,
        lambda r: r.content.__setitem__("extra", ConfigRecord({"x": 1.0})),
        "fine-tune", "unexpected record 'extra'"),
    "train: extra metric key": Case(protocol.TRAIN, set_metric("leak", 3.0), "fine-tune",
                                    "metric 'leak' is not allowed"),
    "train: list-valued metric": Case(protocol.TRAIN, set_metric("epochs_run", [1.0, 2.0]),
                                      "fine-tune", "metric 'epochs_run' is list"),
    "train: float16 weights": Case(protocol.TRAIN, edit_weights(cast("float16")), "fine-tune",
                                   "is float16, expected float32"),
    "train: int8 weights": Case(protocol.TRAIN, edit_weights(cast("int8")), "fine-tune",
                                "is int8, expected float32"),
    "train: int16 weights": Case(protocol.TRAIN, edit_weights(cast("int16")), "fine-tune",
                                 "is int16, expected float32"),
    "train: wrong shape": Case(protocol.TRAIN, edit_weights(first(lambda a: a[:1])), "fine-tune",
                               "has shape"),
    "train: NaN weights": Case(protocol.TRAIN, edit_weights(first(lambda a: a * np.nan)),
                               "fine-tune", "contains NaN or Inf"),
    "train: infinite weights": Case(protocol.TRAIN, edit_weights(first(lambda a: a + np.inf)),
                                    "fine-tune", "contains NaN or Inf"),
    "train: weights x1e30": Case(protocol.TRAIN, edit_weights(lambda w: {k: v * np.float32(1e30)
                                                                        for k, v in w.items()}),
                                 "fine-tune", "(federation.max_task_vector_norm_ratio)"),
    "train: size 0": Case(protocol.TRAIN, set_metric("n_train_sequences", 0.0), "fine-tune",
                          "'n_train_sequences' is 0.0"),
    "train: negative size": Case(protocol.TRAIN, set_metric("n_train_sequences", -5.0),
                                 "fine-tune", "'n_train_sequences' is -5.0"),
    "train: NaN size": Case(protocol.TRAIN, set_metric("n_train_sequences", math.nan),
                            "fine-tune", "metric 'n_train_sequences' is nan"),
    "train: missing size": Case(protocol.TRAIN, set_metric("n_train_sequences", None),
                                "fine-tune", "lacks metric(s) n_train_sequences"),
    "train: size disagrees with describe": Case(
        protocol.TRAIN, set_metric("n_train_sequences", 1e6), "fine-tune",
        "claims 1000000 training sequences, but the node described a domain of"),
    "train: absurd size": Case(protocol.TRAIN, set_metric("n_train_sequences", 1e30),
                               "fine-tune", "beyond any real domain"),
    "fedavg: absurd size in a FedAvg round": Case(
        protocol.TRAIN, set_metric("n_train_sequences", 1e30), "fedavg-1",
        "beyond any real domain", group="fedavg-1", fedavg_rounds=1),
    # evaluate
    "evaluate: a model's metrics missing": Case(
        protocol.EVALUATE, drop_record(f"{protocol.RESULT_PREFIX}average"), "evaluate",
        "missing record(s): 'result:average'"),
    "evaluate: extra metric key": Case(
        protocol.EVALUATE, set_metric("test/secret", 1.0, f"{protocol.RESULT_PREFIX}average"),
        "evaluate", "metric 'test/secret' is not allowed"),
    "evaluate: bogus paired key": Case(
        protocol.EVALUATE, rename_pair("test/recall@10/9/2/n"), "evaluate",
        "key 'test/recall@10/9/2/n' is not a paired statistic"),
    "evaluate: too many paired keys": Case(
        protocol.EVALUATE, set_metric("test/recall@10/0/1/n", 1.0, "pairs-extra"), "evaluate",
        "unexpected record 'pairs-extra'"),
    "evaluate: no info": Case(protocol.EVALUATE, drop_record(protocol.INFO), "evaluate",
                              "missing record(s): 'info'"),
}  # fmt: skip


def _check(run_dir: Path, case: Case) -> None:
    results = load_run(run_dir)
    assert results.status == "completed", [f.reason for f in results.failures]
    beta = [f for f in results.failures if f.domain == "beta" or (
        f.domain is None and f.node_id == FIRST_NODE_ID + HOSTILE)]  # fmt: skip
    assert beta, results.failures
    assert any(f.phase == case.phase and case.reason in f.reason for f in beta), [
        (f.phase, f.reason) for f in beta
    ]
    # Nobody else failed, and the honest domains have every merge evaluated.
    others = [f for f in results.failures if f not in beta and f.domain != "beta"]
    assert not others, others
    rows = {(r.model, r.domain) for r in results.rows if r.split == "test"}
    for label in MERGES:
        for domain in [*HONEST, "delta"]:
            assert (label, domain) in rows
    merged_from = {tuple(m["domains"]) for m in results.merges}
    if case.phase in ("describe", "fine-tune"):
        assert merged_from == {tuple(HONEST)}, merged_from
        assert "individual:beta" not in results.models()
    else:
        assert merged_from == {("alpha", "beta", "gamma")}
    beta_rows = {m for m, d in rows if d == "beta"}
    if case.gone:
        assert not beta_rows
    elif case.phase == "evaluate":
        assert not beta_rows  # its metrics were rejected, nothing else
    else:
        # A failure costs its phase only: the merges are still evaluated on beta.
        assert set(MERGES) <= beta_rows
    report = (run_dir / "report.md").read_text()
    assert "beta" in report


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_reply_fails_safe(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    run_dir = run_hostile(tmp_path, case.message_type, case.tamper, group=case.group,
                          bind=case.bind, fedavg_rounds=case.fedavg_rounds)  # fmt: skip
    _check(run_dir, case)


def test_a_fedavg_failure_costs_the_fedavg_baseline_only(tmp_path: Path) -> None:
    """Beta's FedAvg reply is rejected: FedAvg is averaged from the others, and beta's
    own model and every merge with it are kept and evaluated everywhere."""
    run_dir = run_hostile(tmp_path, protocol.TRAIN, set_metric("n_train_sequences", -1.0),
                          group="fedavg-1", fedavg_rounds=1)  # fmt: skip
    results = load_run(run_dir)
    assert results.status == "completed"
    assert "individual:beta" in results.models() and "fedavg" in results.models()
    assert results.baselines["fedavg"]["per_round"][0]["domains"] == HONEST
    assert {r.domain for r in results.rows if r.model == "individual:alpha"} == set(DOMAINS)


def test_a_nan_metric_is_dropped_and_reported(tmp_path: Path) -> None:
    run_dir = run_hostile(
        tmp_path, protocol.EVALUATE,
        set_metric("test/recall@10", math.nan, f"{protocol.RESULT_PREFIX}average"),
    )  # fmt: skip
    results = load_run(run_dir)
    assert results.status == "completed"
    (failure,) = [f for f in results.failures if f.domain == "beta"]
    assert "model 'average' test/recall@10 = nan" in failure.reason
    row = next(r for r in results.rows
               if (r.model, r.domain, r.split) == ("average", "beta", "test"))  # fmt: skip
    assert "recall@10" not in row.metrics and "ndcg@10" in row.metrics


def test_a_list_metric_in_an_evaluate_reply_is_dropped_and_reported(tmp_path: Path) -> None:
    run_dir = run_hostile(
        tmp_path, protocol.EVALUATE,
        set_metric("test/mrr", [0.1, 0.2], f"{protocol.RESULT_PREFIX}average"),
    )  # fmt: skip
    results = load_run(run_dir)
    assert results.status == "completed"
    assert any("metric 'test/mrr' is list, not a number" in f.reason for f in results.failures)


def test_a_squatter_never_displaces_the_bound_node(tmp_path: Path) -> None:
    """Beta's node claims gamma: with the engine's binding it is refused, gamma is
    served by its own node, and beta (whose node squatted) has no node."""
    run_dir = run_hostile(tmp_path, protocol.DESCRIBE, set_info("domain", "gamma"))
    results = load_run(run_dir)
    assert results.status == "completed"
    assert results.node("gamma").node_id == FIRST_NODE_ID + 2
    refused = [f for f in results.failures if f.node_id == FIRST_NODE_ID + HOSTILE]
    assert any("claims domain 'gamma', which is bound to node 1003: refused" in f.reason
               for f in refused)  # fmt: skip
    assert results.node("beta").node_id is None
    assert {tuple(m["domains"]) for m in results.merges} == {("alpha", "gamma")}


def test_without_a_binding_a_contested_domain_is_served_by_no_one(tmp_path: Path) -> None:
    """Beta's node claims gamma and nothing binds domains to nodes (a simulation):
    neither claimant serves gamma. Only alpha is left, under min_domains: the run
    fails, saying so, with results written."""
    run_dir = run_hostile(tmp_path, protocol.DESCRIBE, set_info("domain", "gamma"), bind=False)
    results = load_run(run_dir)
    assert results.node("gamma").node_id is None and results.node("beta").node_id is None
    assert sum("is claimed by nodes 1002, 1003" in f.reason for f in results.failures) == 2
    assert results.status == "failed"
    assert any("only 1 domain model(s) arrived" in f.reason for f in results.failures)


def test_a_task_vector_x5_is_clipped_not_merged_at_full_strength(tmp_path: Path) -> None:
    """Under the outlier limit (10x) but over the clip (3x the median): accepted,
    and scaled down for merging; the scale is recorded."""
    run_dir = run_hostile(tmp_path, protocol.TRAIN, ScaleTaskVector(5.0))
    results = load_run(run_dir)
    assert results.status == "completed" and not results.failures
    merge = results.merges[0]
    assert merge["clip_scale"]["beta"] < 0.75
    norms = merge["task_vector_norms"]
    assert norms["beta"] > 3 * float(np.median([norms["alpha"], norms["gamma"]]))


def test_a_task_vector_x100_is_rejected_as_an_outlier(tmp_path: Path) -> None:
    run_dir = run_hostile(tmp_path, protocol.TRAIN, ScaleTaskVector(100.0))
    _check(run_dir, Case(protocol.TRAIN, ScaleTaskVector(100.0), "fine-tune",
                         "x the median of the other domains'"))  # fmt: skip


class ScaleTaskVector:
    """Beta uploads θ0 + factor·(W − θ0), θ0 being the weights it was sent."""

    def __init__(self, factor: float) -> None:
        self.factor = np.float32(factor)

    def __call__(self, reply: Message) -> None:
        record = reply.content[protocol.WEIGHTS]
        scaled = {}
        for name, array in record.items():
            trained = array.numpy()
            base = _SENT[name]
            scaled[name] = (base + self.factor * (trained - base)).astype(np.float32)
        reply.content[protocol.WEIGHTS] = ArrayRecord({k: Array(v) for k, v in scaled.items()})


_SENT: dict[str, np.ndarray] = {}


@pytest.fixture(autouse=True)
def _remember_sent_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """ScaleTaskVector needs θ0: remember the weights of every train instruction."""
    from silorec.apps import client as node

    original = node.train

    def train(message: Message, context: Context, app_dir: Path) -> Message:
        _SENT.clear()
        _SENT.update({k: v.numpy().copy() for k, v in message.content[protocol.WEIGHTS].items()})
        return original(message, context, app_dir)

    monkeypatch.setattr(node, "train", train)


@pytest.mark.slow
def test_one_poisoned_domain_cannot_ruin_the_quickstart_merges(tmp_path: Path) -> None:
    """Quickstart, toys uploading its task vector x100: every merge keeps at least 0.9x
    the honest domains' (books, kitchen) mean test Recall@10 of the clean run."""
    from silorec.scenario import load_scenario_with_text

    _, _, source = load_scenario_with_text("builtin:quickstart", [])
    domains = ["books", "toys", "kitchen"]
    clean = load_run(run_hostile(tmp_path / "clean", protocol.TRAIN, None,
                                 scenario=Path(source), domains=domains))  # fmt: skip
    poisoned = load_run(run_hostile(tmp_path / "poisoned", protocol.TRAIN, ScaleTaskVector(100.0),
                                    scenario=Path(source), domains=domains))  # fmt: skip
    assert poisoned.status == "completed"
    # Rejected in every round it poisoned, θ0's FedAvg warm-up included.
    failures = [f for f in poisoned.failures if f.domain == "toys"]
    assert {f.phase for f in failures} == {"warm-up-1", "warm-up-2", "fine-tune"}
    assert all("x the median of the other domains'" in f.reason for f in failures)
    honest = ["books", "kitchen"]
    for label in clean.models("merge"):
        before = clean.table("test", "recall@10").loc[label, honest].mean()
        after = poisoned.table("test", "recall@10").loc[label, honest].mean()
        assert after >= 0.9 * before, (label, before, after)
