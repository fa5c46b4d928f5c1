"""``silorec node check``: a data owner's dry run on a domain folder in the generic
format. It must read the folder as the node does, run the real node once, and show
what each reply holds, as the node's guard judged it, without any value."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from silorec.cli import main
from silorec.engine.dry_run import dry_run_node
from silorec.engine.project import find_project
from silorec.models import model_weight_spec
from silorec.node.check import check_target, dry_run_scenario, passed
from silorec.scenario import load_scenario
from silorec.wire import protocol

DOMAIN = "garden"
HASHING_DIM = 32


def write_generic_domain(folder: Path, n_users: int = 40, n_items: int = 25) -> Path:
    """A domain in the generic format: user ids ``cust-<n>``, item ids ``sku-<n>``,
    titles ``Garden thing <n>``, 4 to 9 interactions per user."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    with open(folder / "interactions.csv", "w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["user_id", "item_id", "timestamp"])
        for user in range(n_users):
            items = rng.choice(n_items, size=int(rng.integers(4, 10)), replace=False)
            for step, item in enumerate(items):
                rows.writerow([f"cust-{user:04d}", f"sku-{item:04d}", 1_600_000_000 + step])
    with open(folder / "items.csv", "w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["item_id", "title", "brand", "category"])
        for item in range(n_items):
            rows.writerow([f"sku-{item:04d}", f"Garden thing {item}", "Acme", "Garden"])
    return folder


SCENARIO = f"""
name = "garden-check"
[text]
encoder = "hashing"
hashing_dim = {HASHING_DIM}
[model]
dim = 16
layers = 1
heads = 2
max_len = 10
[train]
epochs = 1
progress = false
[federation]
min_domains = 1
[[merges]]
method = "average"
[[domains]]
name = "{DOMAIN}"
data = {{ kind = "generic", path = "data" }}
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_generic_domain(tmp_path / "data")


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "garden.toml"
    path.write_text(SCENARIO)
    return path


def test_the_dry_run_scenario_keeps_the_node_and_cuts_the_cost(
    data_dir: Path, scenario_file: Path
) -> None:
    target = check_target(data_dir, DOMAIN, str(scenario_file))
    federation = load_scenario(str(scenario_file))
    dry = dry_run_scenario(target)
    assert [d.name for d in dry.domains] == [DOMAIN] and dry.domains[0] == federation.domains[0]
    assert (dry.text, dry.model, dry.evaluation) == (
        federation.text,
        federation.model,
        federation.evaluation,
    )
    assert dry.train.epochs == 1 and dry.merges == [] and dry.base.init == "seeded"
    assert dry.audit.enabled and dry.federation.min_domains == 1


def test_the_real_node_sends_only_what_the_policy_allows(
    data_dir: Path, scenario_file: Path
) -> None:
    target = check_target(data_dir, DOMAIN, str(scenario_file))
    run = dry_run_node(target, find_project())
    assert run.failure is None and passed(run.replies)
    replies = {entry.message_type: entry.payload for entry in run.replies}
    assert list(replies) == [protocol.DESCRIBE, protocol.TRAIN, protocol.EVALUATE]
    train = {record.name: record for record in replies[protocol.TRAIN].records}
    spec = model_weight_spec(target.scenario.model, HASHING_DIM)
    weights = {a.name: (a.shape, a.dtype) for a in train[protocol.WEIGHTS].arrays}
    assert weights == {name: (tuple(shape), dtype) for name, (shape, dtype) in spec.items()}
    (embeddings,) = train[protocol.ITEM_EMBEDDINGS].arrays
    assert (embeddings.shape, embeddings.dtype) == ((25, HASHING_DIM), "float32")
    results = {r.name for r in replies[protocol.EVALUATE].records}
    assert {
        f"{protocol.RESULT_PREFIX}theta0",
        f"{protocol.RESULT_PREFIX}individual:{DOMAIN}",
    } <= results


def test_the_command_prints_statistics_and_structure_but_never_data(
    data_dir: Path, scenario_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["node", "check", "--data", str(data_dir), "--domain", DOMAIN,
                 "--scenario", str(scenario_file)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "users" in out and "prepared" in out  # the before/after statistics
    for reply in ("query.describe reply", "train reply (fine-tune)", "evaluate reply"):
        assert reply in out
    assert f"item_embeddings (arrays): 1, {25 * HASHING_DIM * 4:,} bytes" in out
    assert "test/recall@10 (float)" in out
    assert "check passed" in out
    # No identifier, no item text, no metric value.
    assert "cust-" not in out and "sku-" not in out and "Garden thing" not in out
    assert re.search(r"\d\.\d\d", out.split("What this node sends")[1]) is None


def test_bad_input_is_one_clear_error(
    data_dir: Path, scenario_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "check", "--data", str(data_dir), "--domain", "kitchen",
                 "--scenario", str(scenario_file)]) == 2  # fmt: skip
    assert "has no domain 'kitchen' (known: garden)" in capsys.readouterr().err
    assert main(["node", "check", "--data", str(tmp_path / "nowhere"), "--domain", DOMAIN]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert main(["node", "check", "--data", str(data_dir), "--domain", "books",
                 "--scenario", "builtin:quickstart"]) == 2  # fmt: skip
    assert "is synthetic" in capsys.readouterr().err
    (data_dir / "items.csv").write_text("item_id,title\nsku-0000,Only one\n")
    assert main(["node", "check", "--data", str(data_dir), "--domain", DOMAIN,
                 "--scenario", str(scenario_file)]) == 2  # fmt: skip
    assert "items.csv" in capsys.readouterr().err
