"""A domain's catalogue embeddings travel once per run: later train requests name the
hash of what the server holds, and the node leaves them out of its reply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from silorec.audit.auditor import audit_run
from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.provenance.merge_inputs import load_merge_inputs
from silorec.results import load_run
from silorec.wire import protocol

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"
MERGED = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny scenario with θ0 from 2 FedAvg rounds: three train rounds in all."""
    folder = tmp_path_factory.mktemp("once")
    text = TINY.read_text().replace(
        "[output]",
        '[base]\ninit = "fedavg"\nfedavg_rounds = 2\nfedavg_local_epochs = 1\n\n[output]',
        1,
    )
    (folder / "warm.toml").write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SILOREC_CACHE_DIR", str(folder / "cache"))
        return run_inprocess(folder / "warm.toml", find_project(Path(__file__).parent),
                             out=folder / "run")  # fmt: skip


def _train_replies(log: Path) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in entries if e["event"] == "reply" and e["message_type"] == "train"]


def test_each_catalogue_is_uploaded_once(warm_run: Path) -> None:
    assert load_run(warm_run).status == "completed"
    for domain in MERGED:
        replies = _train_replies(warm_run / "audit" / f"node-{domain}.jsonl")
        assert len(replies) == 3, domain  # 2 FedAvg rounds + fine-tuning
        with_catalogue = [r for r in replies
                          if any(x["name"] == protocol.ITEM_EMBEDDINGS for x in r["records"])]  # fmt: skip
        assert with_catalogue == replies[:1], f"{domain}: only the first reply carries it"
        assert replies[0]["bytes"] > replies[1]["bytes"]
    assert audit_run(warm_run).passed, "the audit accepts replies without the catalogue"


def test_the_server_merges_with_the_catalogue_it_was_sent(warm_run: Path) -> None:
    stored = load_merge_inputs(warm_run).item_embeddings
    for domain in MERGED:
        first = _train_replies(warm_run / "audit" / f"node-{domain}.jsonl")[0]
        record = next(x for x in first["records"] if x["name"] == protocol.ITEM_EMBEDDINGS)
        array = record["arrays"][0]
        assert tuple(array["shape"]) == stored[domain].shape
        assert array["sha256"] == _array_sha(stored[domain]), domain


def _array_sha(values: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32).tobytes()).hexdigest()


def test_the_hash_is_the_same_on_both_sides() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert protocol.catalogue_sha256(a) == protocol.catalogue_sha256(a.copy())
    assert protocol.catalogue_sha256(a) != protocol.catalogue_sha256(a.reshape(4, 3))
    b = a.copy()
    b[1, 1] += 1e-6
    assert protocol.catalogue_sha256(a) != protocol.catalogue_sha256(b)
