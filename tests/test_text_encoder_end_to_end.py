"""The text-encoder backbone through whole runs: ``tests/scenarios/tiny_encoder.toml``
in process (and through Flower's simulation engine), with training-free and learned
merges, every model evaluated on every domain, and an audit that passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from silorec.audit.log import read_log
from silorec.cli import main
from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.results import load_run
from silorec.wire import protocol

ROOT = Path(__file__).resolve().parents[1]
TINY_ENCODER = ROOT / "tests" / "scenarios" / "tiny_encoder.toml"
MERGED, UNSEEN = ["alpha", "beta", "gamma"], ["delta"]
MERGES = ["average", "task_arithmetic(lambda=0.3)", "ties(density=0.2,lambda=1.0)",
          "mergerec(batch_size=8,steps=20)", "mergerec-layer", "adamerging(batch_size=8,steps=20)"]  # fmt: skip
MODELS = ["theta0", *[f"individual:{d}" for d in MERGED], *MERGES]

pytestmark = pytest.mark.slow
ALLOW_TEXTS = "allow-item-text=true"


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-encoder") / "run"
    # The nodes' own choice: their floor refuses to send item texts otherwise.
    return run_inprocess(TINY_ENCODER, find_project(ROOT), out=out, node_config=ALLOW_TEXTS)


def test_every_model_is_evaluated_on_every_domain(encoder_run: Path) -> None:
    results = load_run(encoder_run)
    assert results.status == "completed" and results.failures == []
    assert sorted(results.models()) == sorted(MODELS)
    found = {(r.model, r.domain, r.split) for r in results.rows}
    assert found == {(m, d, s) for m in MODELS for d in MERGED + UNSEEN for s in ("valid", "test")}
    assert all(0.0 <= r.metrics["ndcg@10"] <= 1.0 for r in results.rows)


def test_learned_merges_ran_on_the_uploaded_item_texts(encoder_run: Path) -> None:
    merges = {m["label"]: m for m in load_run(encoder_run).merges}
    for label, groups in [("mergerec(batch_size=8,steps=20)", ["all"]),
                          ("mergerec-layer", ["layer 0", "others"]),
                          ("adamerging(batch_size=8,steps=20)", ["layer 0", "others"])]:  # fmt: skip
        diagnostics = merges[label]["diagnostics"]
        assert diagnostics["groups"] == groups
        assert diagnostics["pseudo_users"] == [40, 40, 40]  # every item of every domain
        assert len(diagnostics["loss_curve"]) == 20


def test_only_train_replies_carry_the_catalogue_texts_and_the_audit_passes(
    encoder_run: Path,
) -> None:
    for domain in MERGED + UNSEEN:
        for entry in read_log(encoder_run / "audit" / f"node-{domain}.jsonl"):
            record = entry.payload.record(protocol.ITEM_TEXTS)
            if entry.message_type == protocol.TRAIN:
                assert len(record.entries[protocol.ITEM_TEXTS_KEY]) == 40
            else:
                assert record is None
    assert main(["audit", str(encoder_run)]) == 0
    report = json.loads((encoder_run / "audit.json").read_text())
    assert report["verdict"] == "PASS" and report["findings"] == []
    sent = {n["domain"]: n["data_sent"] for n in report["nodes"]}
    assert all("item texts" in sent[d] for d in MERGED)
    assert "item texts" not in sent["delta"]


@pytest.mark.flower
def test_the_same_scenario_completes_through_flwr_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    command = [sys.executable, "-m", "silorec.cli", "simulate", str(TINY_ENCODER),
               "--out", str(tmp_path / "run"), "--flwr-home", str(tmp_path / "home"),
               "--node-config", ALLOW_TEXTS]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = load_run(tmp_path / "run")
    assert results.status == "completed" and results.engine == "simulation"
    assert len(results.rows) == len(MODELS) * 4 * 2
