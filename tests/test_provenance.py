"""Merge cards, bit-for-bit replay and domains joining/leaving, on a real in-process
run of the tiny scenario (see the ``saved_tiny_run`` fixture)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from silorec.cli import main
from silorec.provenance import read_card
from silorec.provenance.hashing import weights_sha256
from silorec.provenance.membership import MembershipError, remerge
from silorec.provenance.merge_inputs import (
    MergeInputsError,
    load_merge_inputs,
    load_npz,
    saved_model_file,
)
from silorec.provenance.replay import replay
from silorec.results import load_run

MERGED = ["alpha", "beta", "gamma"]
TA = "task_arithmetic(lambda=0.3)"


@pytest.fixture
def run(saved_tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the run to change."""
    return Path(shutil.copytree(saved_tiny_run, tmp_path / "run"))


def _rewrite_npz(path: Path, change) -> None:  # noqa: ANN001 - change(weights) in place
    weights = load_npz(path)
    change(weights)
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    path.write_bytes(buffer.getvalue())


# -- hashes --------------------------------------------------------------------------


def test_weights_hash_sees_one_bit_dtype_and_name_but_not_order() -> None:
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    digest = weights_sha256(a)
    assert weights_sha256(dict(reversed(list(a.items())))) == digest
    flipped = {k: v.copy() for k, v in a.items()}
    flipped["w"].view(np.uint32)[0, 1] ^= 1  # the lowest bit of one float
    assert weights_sha256(flipped) != digest
    assert weights_sha256({**a, "w": a["w"].astype(np.float64)}) != digest
    assert weights_sha256({"w2": a["w"], "b": a["b"]}) != digest
    assert weights_sha256({**a, "w": a["w"].reshape(3, 2)}) != digest


# -- the card ------------------------------------------------------------------------


def test_every_run_writes_a_card_with_hashes_methods_privacy_and_metrics(
    saved_tiny_run: Path,
) -> None:
    card = read_card(saved_tiny_run / "merge-card.json")
    results = load_run(saved_tiny_run)
    theta0 = load_npz(saved_model_file(saved_tiny_run, "theta0"))
    assert card["base"]["sha256"] == weights_sha256(theta0)
    assert card["run"]["engine"] == results.engine and card["run"]["seeds"] == results.seeds
    assert {d["domain"] for d in card["domains"]} == set(MERGED) | {"delta"}
    for entry in card["domains"]:
        if entry["domain"] in MERGED:
            upload = load_npz(saved_model_file(saved_tiny_run, f"individual:{entry['domain']}"))
            assert entry["upload_sha256"] == weights_sha256(upload)
            assert entry["merge_input_sha256"]
    labels = [m["label"] for m in card["merges"]]
    assert labels == [m["label"] for m in results.merges] and TA in labels
    ta = next(m for m in card["merges"] if m["label"] == TA)
    assert ta["method"] == "task_arithmetic" and ta["params"] == {"lambda": 0.3}
    assert ta["domains"] == MERGED
    assert ta["sha256"] == weights_sha256(load_npz(saved_model_file(saved_tiny_run, TA)))
    rows = {r.domain: r.metrics for r in results.rows if r.model == TA and r.split == "test"}
    assert ta["mean_merged_test"]["recall@10"] == pytest.approx(
        np.mean([rows[d]["recall@10"] for d in MERGED]), abs=1e-12
    )
    recorded = next(m for m in card["models"] if m["label"] == TA)["test"]
    assert {d: v["ndcg@10"] for d, v in recorded.items()} == {
        d: m["ndcg@10"] for d, m in rows.items()
    }
    assert card["audit"]["logs"], "the card names each node's audit log by hash"
    text = (saved_tiny_run / "merge-card.md").read_text()
    assert all(label in text for label in labels) and card["base"]["sha256"][:12] in text


def test_the_card_records_the_nodes_privacy_ledger(saved_tiny_run: Path) -> None:
    results = load_run(saved_tiny_run)
    card = read_card(saved_tiny_run)
    for node in results.nodes:
        ledger = {k[len("privacy_") :]: v for k, v in node.info.items() if k.startswith("privacy_")}
        entry = next(d for d in card["domains"] if d["domain"] == node.domain)
        assert entry["privacy"] == ledger


# -- replay --------------------------------------------------------------------------


def test_replay_is_bit_identical_on_the_same_machine(saved_tiny_run: Path, capsys) -> None:  # noqa: ANN001
    report = replay(saved_tiny_run / "merge-card.json")
    assert report.identical and len(report.merges) == 4
    assert main(["replay", str(saved_tiny_run / "merge-card.json")]) == 0
    assert "replay IDENTICAL: 4/4" in capsys.readouterr().out


def test_replay_says_which_merge_differs_from_its_card(run: Path, capsys) -> None:  # noqa: ANN001
    card = json.loads((run / "merge-card.json").read_text())
    entry = next(m for m in card["merges"] if m["label"] == TA)
    entry["sha256"] = "0" * 64  # the card claims a merge the inputs do not give
    (run / "merge-card.json").write_text(json.dumps(card))
    assert main(["replay", str(run / "merge-card.json"), "--run", str(run)]) == 1
    out = capsys.readouterr().out
    assert f"{TA}: DIFFERS" in out and "average: bit-identical" in out
    assert "replay DIFFERS: 3/4" in out


def test_replay_refuses_a_changed_upload(run: Path, capsys) -> None:  # noqa: ANN001
    def nudge(weights: dict[str, np.ndarray]) -> None:
        name = next(iter(weights))
        weights[name] = weights[name] + np.float32(1e-3)

    _rewrite_npz(saved_model_file(run, "individual:beta"), nudge)
    with pytest.raises(MergeInputsError, match="beta"):
        load_merge_inputs(run)
    assert main(["replay", str(run), "--run", str(run)]) == 2
    assert "beta" in capsys.readouterr().err


def test_replay_of_a_moved_run_needs_run(saved_tiny_run: Path, tmp_path: Path) -> None:
    moved = Path(shutil.copytree(saved_tiny_run, tmp_path / "moved"))
    report = replay(moved / "merge-card.json", run_dir=moved, labels=[TA])
    assert report.identical and [m.label for m in report.merges] == [TA]
    with pytest.raises(MergeInputsError, match="no merge labelled"):
        replay(moved / "merge-card.json", run_dir=moved, labels=["nonesuch"])


# -- joining and leaving -------------------------------------------------------------


def test_remove_then_add_back_gives_the_original_merges_bit_for_bit(
    saved_tiny_run: Path, tmp_path: Path
) -> None:
    without = remerge(saved_tiny_run, tmp_path / "without", remove=["gamma"])
    assert without.order == ["alpha", "beta"] and not without.failures
    again = remerge(without.run_dir, tmp_path / "again", add=["gamma"], source_run=saved_tiny_run)
    original = read_card(saved_tiny_run)["merges"]
    rebuilt = read_card(again.run_dir)["merges"]
    assert [m["sha256"] for m in rebuilt] == [m["sha256"] for m in original]
    removed = read_card(without.run_dir)["merges"]
    assert all(a["sha256"] != b["sha256"] for a, b in zip(removed, original, strict=True))


def test_unmerge_equals_the_algebra_of_task_arithmetic(
    saved_tiny_run: Path, tmp_path: Path
) -> None:
    """merge(A,B,C) with task arithmetic, minus λ·τ_C, is merge(A,B): checked against
    the stored inputs, not against the code that produced the new merge."""
    without = remerge(saved_tiny_run, tmp_path / "without", remove=["gamma"])
    theta0 = load_npz(saved_model_file(saved_tiny_run, "theta0"))
    gamma = load_merge_inputs(saved_tiny_run).models["gamma"]
    full = load_npz(saved_model_file(saved_tiny_run, TA))
    merged_ab = load_npz(saved_model_file(without.run_dir, TA))
    for name, value in merged_ab.items():
        if np.issubdtype(value.dtype, np.floating):
            expected = full[name] - 0.3 * (gamma[name] - theta0[name])
            np.testing.assert_allclose(value, expected, atol=1e-5, err_msg=name)
    average = load_npz(saved_model_file(without.run_dir, "average"))
    inputs = load_merge_inputs(without.run_dir).models
    for name, value in average.items():
        if np.issubdtype(value.dtype, np.floating):
            expected = (inputs["alpha"][name] + inputs["beta"][name]) / 2
            np.testing.assert_allclose(value, expected, atol=1e-6, err_msg=name)


def test_a_derived_run_says_what_changed_and_is_replayable(
    saved_tiny_run: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    assert main(["merge", "remove", str(saved_tiny_run), "--domain", "gamma",
                 "--out", str(tmp_path / "d"), "--engine", "none"]) == 0  # fmt: skip
    assert "not evaluated (--engine none)" in capsys.readouterr().out
    derived = load_run(tmp_path / "d")
    assert derived.derived_from["removed"] == ["gamma"] and not derived.derived_from["evaluated"]
    roles = {n.domain: n.role for n in derived.nodes}
    assert roles == {"alpha": "merged", "beta": "merged", "gamma": "unseen", "delta": "unseen"}
    assert {r.model for r in derived.rows} == {"theta0", "individual:alpha", "individual:beta"}
    assert all(m["domains"] == ["alpha", "beta"] for m in derived.merges)
    assert replay(tmp_path / "d" / "merge-card.json").identical


def test_joining_and_leaving_fail_clearly(saved_tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(MembershipError, match="'delta' is not in the merge"):
        remerge(saved_tiny_run, tmp_path / "a", remove=["delta"])
    with pytest.raises(MembershipError, match="--from"):
        remerge(saved_tiny_run, tmp_path / "b", add=["gamma"])
    with pytest.raises(MembershipError, match="already in the merge"):
        remerge(saved_tiny_run, tmp_path / "c", add=["gamma"], source_run=saved_tiny_run)
    with pytest.raises(MembershipError, match="leaves no domain"):
        remerge(saved_tiny_run, tmp_path / "d", remove=MERGED)
    other = Path(shutil.copytree(saved_tiny_run, tmp_path / "other"))

    def shift(weights: dict[str, np.ndarray]) -> None:
        name = next(iter(weights))
        weights[name] = weights[name] + np.float32(1.0)

    _rewrite_npz(saved_model_file(other, "theta0"), shift)
    without = remerge(saved_tiny_run, tmp_path / "e", remove=["gamma"])
    with pytest.raises(MembershipError, match="same θ0"):
        remerge(without.run_dir, tmp_path / "f", add=["gamma"], source_run=other)
    (tmp_path / "g").mkdir()
    with pytest.raises(FileExistsError):
        remerge(saved_tiny_run, tmp_path / "g", remove=["gamma"])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "no staging left"
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
