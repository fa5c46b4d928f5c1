"""End to end through the in-process engine: the project's real ServerApp and
ClientApp on a tiny scenario, and how the merge server copes with bad nodes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, Context, Message

from silorec.engine.inprocess import ServerAppFailed, run_apps
from silorec.engine.local import RunFailed, run_inprocess
from silorec.engine.project import find_project
from silorec.results import load_run
from silorec.wire import protocol

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"
MERGED, UNSEEN = ["alpha", "beta", "gamma"], ["delta"]
MERGES = [
    "average",
    "task_arithmetic(lambda=0.3)",
    "ties(density=0.2,lambda=1.0)",
    "dare(combine=ties,drop_rate=0.5,lambda=1.0)",
]


def tiny_variant(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The tiny scenario with textual edits (old, new) applied."""
    text = TINY.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    return run_inprocess(TINY, find_project(Path(__file__).parent), out=out)


def test_run_directory_has_every_output(tiny_run: Path) -> None:
    for name in ["results.json", "results.csv", "report.md", "scenario.toml", "server.log",
                 "plots/recall10_by_domain.png", "plots/cross_domain_matrix.png"]:  # fmt: skip
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "scenario.toml").read_text() == TINY.read_text()
    assert not [p for p in tiny_run.rglob("*") if ".tmp" in p.name]


def test_every_model_is_evaluated_on_every_domain_and_split(tiny_run: Path) -> None:
    results = load_run(tiny_run)
    assert results.status == "completed" and results.engine == "inprocess"
    models = ["theta0", *[f"individual:{d}" for d in MERGED], *MERGES]
    assert sorted(results.models()) == sorted(models)
    expected = {(m, d, s) for m in models for d in MERGED + UNSEEN for s in ("valid", "test")}
    assert {(r.model, r.domain, r.split) for r in results.rows} == expected
    for row in results.rows:
        assert set(row.metrics) == {
            *(f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20, 50)),
            "mrr",
        }
        assert row.n_users == 60  # every synthetic user is evaluable
        assert row.domain_role == ("unseen" if row.domain in UNSEEN else "merged")
        assert row.source == (row.model.split(":")[1] if row.kind == "individual" else None)
    csv_lines = (tiny_run / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(expected)


def test_only_merged_domains_upload_models(tiny_run: Path) -> None:
    results = load_run(tiny_run)
    nodes = {n.domain: n for n in results.nodes}
    model_bytes = 4 * sum(int(np.prod(v)) for v in _weight_shapes(results.scenario).values())
    for name in MERGED:
        assert nodes[name].status == "ok"
        # θ0 down, 8 models down for evaluation; weights + item embeddings up.
        assert nodes[name].bytes_sent > 9 * model_bytes
        assert nodes[name].bytes_received > model_bytes
        assert nodes[name].info["n_items"] == 40
    # The unseen node never trains: it uploads metrics only (the server's audit log
    # shows every record it received from that node).
    assert nodes["delta"].bytes_received < model_bytes
    assert nodes["delta"].role == "unseen"
    received = [
        json.loads(line) for line in (tiny_run / "audit" / "server.jsonl").read_text().splitlines()
    ]
    from_delta = [e for e in received if e.get("node_id") == nodes["delta"].node_id
                  and e.get("event") == "received"]  # fmt: skip
    assert from_delta and all(r["kind"] != "array" for e in from_delta for r in e["records"])
    assert results.base == {"init": "seeded", "seed": 0}
    assert [m["label"] for m in results.merges] == MERGES
    assert all(m["domains"] == MERGED for m in results.merges)
    assert set(results.timings) >= {"connect", "describe", "base", "fine-tune", "merge", "evaluate"}


def _weight_shapes(scenario: dict) -> dict[str, tuple[int, ...]]:
    from silorec.models import model_weight_spec
    from silorec.scenario import ModelSettings

    spec = model_weight_spec(ModelSettings(**scenario["model"]), scenario["text"]["hashing_dim"])
    return {name: shape for name, (shape, _) in spec.items()}


def test_theta0_and_individual_models_differ(tiny_run: Path) -> None:
    """Fine-tuning changed something: the individual models are not θ0."""
    results = load_run(tiny_run)
    nodes = {n.domain: n for n in results.nodes}
    for name in MERGED:
        assert nodes[name].info["epochs_run"] == 2
        assert "best_valid_ndcg@10" in nodes[name].info


# -- failures -----------------------------------------------------------------


def run_with_client(
    scenario: Path, out: Path, client: Callable[[Message, Context], Message]
) -> Path:
    """Run the project's ServerApp against a wrapped ClientApp; returns the run dir."""
    project = find_project(Path(__file__).parent)
    run_config = {**project.run_config, "scenario": str(scenario), "run-dir": str(out),
                  "engine": "inprocess"}  # fmt: skip
    try:
        run_apps(project.load(project.serverapp), client, num_nodes=4, run_config=run_config)
    except ServerAppFailed:
        pass
    return out


def real_client() -> Callable[[Message, Context], Message]:
    return find_project(Path(__file__).parent).load("clients.app:app")


def on(partition: int, message_type: str, action: Callable[[Message, Context], Message]):
    """A ClientApp that does ``action`` instead for one node and message type."""
    app = real_client()

    def client(message: Message, context: Context) -> Message:
        if (
            context.node_config["partition-id"] == partition
            and message.metadata.message_type == message_type
        ):
            return action(message, context)
        return app(message, context)

    return client


def test_a_crashing_node_is_recorded_and_the_merge_goes_on(tmp_path: Path) -> None:
    def crash(message: Message, context: Context) -> Message:
        raise RuntimeError("disk on fire")

    run_dir = run_with_client(TINY, tmp_path / "run", on(1, protocol.TRAIN, crash))
    results = load_run(run_dir)
    assert results.status == "completed"
    (failure,) = results.failures
    assert (failure.phase, failure.domain) == ("fine-tune", "beta")
    assert "disk on fire" in failure.reason
    assert {m["label"] for m in results.merges} == set(MERGES)
    assert all(m["domains"] == ["alpha", "gamma"] for m in results.merges)
    assert "individual:beta" not in results.models()
    # A failure costs its phase only: beta's node answered (with an error), so the
    # merges are still evaluated on beta.
    assert {r.domain for r in results.rows} == {"alpha", "beta", "gamma", "delta"}
    node = results.node("beta")
    assert node is not None and node.status == "failed" and "disk on fire" in node.error
    assert "disk on fire" in (run_dir / "report.md").read_text()


def _corrupt_upload(edit: Callable[[dict[str, np.ndarray]], None]):
    app = real_client()

    def action(message: Message, context: Context) -> Message:
        reply = app(message, context)
        record = reply.content[protocol.WEIGHTS]
        arrays = {k: v.numpy() for k, v in record.items()}
        edit(arrays)
        record.clear()
        for name, value in arrays.items():
            record[name] = Array(value)
        return reply

    return action


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda w: w["recency.weight"].__setitem__((0, 0), np.nan), "array 'weights/recency.weight' contains NaN or Inf"),
        (lambda w: w.update({"recency.weight": np.zeros((3, 3), np.float32)}), "array 'weights/recency.weight' has shape [3, 3], expected [10, 16]"),
        (lambda w: w.pop("final_norm.bias"), "record 'weights': missing array(s) 'final_norm.bias'"),
    ],
    ids=["nan", "shape", "missing"],
)  # fmt: skip
def test_a_malformed_upload_is_rejected_with_its_reason(tmp_path: Path, edit, reason) -> None:
    run_dir = run_with_client(TINY, tmp_path / "run", on(2, protocol.TRAIN, _corrupt_upload(edit)))
    results = load_run(run_dir)
    assert results.status == "completed"
    (failure,) = results.failures
    assert failure.domain == "gamma" and reason in failure.reason
    assert results.node("gamma").status == "rejected"
    assert all(m["domains"] == ["alpha", "beta"] for m in results.merges)


def test_too_few_models_fails_the_run_but_keeps_what_was_measured(tmp_path: Path) -> None:
    def crash(message: Message, context: Context) -> Message:
        raise RuntimeError("out of memory")

    app = real_client()

    def client(message: Message, context: Context) -> Message:
        if (context.node_config["partition-id"] in (0, 1)
                and message.metadata.message_type == protocol.TRAIN):  # fmt: skip
            return crash(message, context)
        return app(message, context)

    results = load_run(run_with_client(TINY, tmp_path / "run", client))
    assert results.status == "failed"
    assert any("only 1 domain model(s) arrived" in f.reason for f in results.failures)
    assert results.merges == []
    # θ0 and the one individual model were still evaluated on the remaining nodes.
    assert {r.model for r in results.rows} == {"theta0", "individual:gamma"}


def test_a_slow_node_times_out_and_the_others_carry_on(tmp_path: Path) -> None:
    import time

    scenario = tiny_variant(tmp_path, ("train_timeout_s = 60", "train_timeout_s = 8"))
    app = real_client()

    def slow(message: Message, context: Context) -> Message:
        time.sleep(10)  # the others need well under 8 s each, even on a busy machine
        return app(message, context)

    results = load_run(run_with_client(scenario, tmp_path / "run", on(0, protocol.TRAIN, slow)))
    assert results.status == "completed"
    (failure,) = results.failures
    assert failure.domain == "alpha" and "no reply within 8 s" in failure.reason
    assert all(m["domains"] == ["beta", "gamma"] for m in results.merges)


def test_missing_data_on_one_node_is_reported_before_training(tmp_path: Path) -> None:
    scenario = tiny_variant(
        tmp_path,
        ('name = "gamma"\ndata = { kind = "synthetic", world_seed = 1, n_users = 60, n_items = 40, seed = 3 }',
         'name = "gamma"\ndata = { kind = "mergerec", path = "nowhere/Gamma.tar.gz" }'),
    )  # fmt: skip
    results = load_run(run_with_client(scenario, tmp_path / "run", real_client()))
    assert results.status == "completed"
    reasons = {(f.phase, f.domain): f.reason for f in results.failures}
    assert "Gamma.tar.gz" in reasons[("describe", None)]
    assert reasons[("describe", "gamma")] == "no node serves this domain"
    assert all(m["domains"] == ["alpha", "beta"] for m in results.merges)


def test_run_inprocess_checks_data_before_running(tmp_path: Path) -> None:
    from silorec.data.errors import DataError

    scenario = tiny_variant(tmp_path, ('data = { kind = "synthetic", world_seed = 1, n_users = 60, n_items = 40, seed = 2 }',
                                       'data = { kind = "mergerec", path = "nowhere/Beta.tar.gz" }'))  # fmt: skip
    with pytest.raises(DataError, match="domain 'beta'.*Beta.tar.gz"):
        run_inprocess(scenario, find_project(Path(__file__).parent), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_inprocess_reports_a_failed_run(tmp_path: Path) -> None:
    for name in ("Beta", "Gamma"):
        (tmp_path / f"{name}.tar.gz").write_bytes(b"not a tar archive")
    scenario = tiny_variant(tmp_path, ('data = { kind = "synthetic", world_seed = 1, n_users = 60, n_items = 40, seed = 2 }',
                                       'data = { kind = "mergerec", path = "Beta.tar.gz" }'),
                            ('data = { kind = "synthetic", world_seed = 1, n_users = 60, n_items = 40, seed = 3 }',
                             'data = { kind = "mergerec", path = "Gamma.tar.gz" }'))  # fmt: skip
    with pytest.raises(RunFailed) as failed:
        run_inprocess(scenario, find_project(Path(__file__).parent), out=tmp_path / "run")
    assert "only 1 domain model(s) arrived" in str(failed.value)
    assert failed.value.run_dir == (tmp_path / "run").resolve()
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["status"] == "failed"
