"""Using the merged model: export, load, recommend (Python, CLI, HTTP), on a real
in-process run of the tiny scenario (the ``saved_tiny_run`` fixture)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import silorec
from silorec.cli import main
from silorec.evaluation.protocol import evaluation_users
from silorec.results import load_run
from silorec.scenario import Scenario
from silorec.serving import (
    Catalogue,
    ExportError,
    RecommendError,
    default_label,
    export_model,
    load,
    open_model,
    read_config,
)
from silorec.serving import export as export_module
from silorec.serving.catalogue import domain_catalogue

UNSEEN = "delta"


@pytest.fixture(scope="module")
def exported(saved_tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(saved_tiny_run, None, tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def unseen(saved_tiny_run: Path):  # noqa: ANN201 - (catalogue, domain data, scenario)
    scenario = Scenario.model_validate(load_run(saved_tiny_run).scenario)
    catalogue, domain = domain_catalogue(scenario, UNSEEN)
    return catalogue, domain, scenario


@pytest.fixture(scope="module")
def items_csv(saved_tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("items") / "items.csv"
    scenario = tmp_path_factory.getbasetemp() / "tiny.toml"
    scenario.write_text(load_run(saved_tiny_run).scenario_toml)
    assert main(["data", "items", str(scenario), "--domain", UNSEEN, "--out", str(out)]) == 0
    return out


# -- export ------------------------------------------------------------------------


def test_export_is_a_self_contained_folder(saved_tiny_run: Path, exported: Path) -> None:
    label = default_label(saved_tiny_run)
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md", "config.json", "merge-card.json", "merge-card.md", "model.safetensors",
    ]  # fmt: skip
    config = read_config(exported)
    assert config.label == label and config.kind == "merge"
    assert config.text_encoder["name"].startswith("hashing-")
    card = json.loads((exported / "merge-card.json").read_text())
    assert [m["label"] for m in card["merges"]] == [label]
    assert [m["label"] for m in card["models"]] == [label]
    assert config.weights_sha256 == card["models"][0]["sha256"]


def test_the_default_model_is_the_best_merge_on_validation(saved_tiny_run: Path) -> None:
    results = load_run(saved_tiny_run)
    merged = results.domains("merged")
    merges = [m["label"] for m in results.merges]
    best = max(
        merges,
        key=lambda m: np.mean([results.value(m, d, "valid", "recall@10") for d in merged]),
    )
    assert default_label(saved_tiny_run) == best


def test_export_refuses_bad_requests_and_leaves_nothing_half_written(
    saved_tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ExportError, match="no saved model labelled 'nonesuch'; saved: 'theta0'"):
        export_model(saved_tiny_run, "nonesuch", tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_model(saved_tiny_run, "theta0", tmp_path / "full")

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "render_card", broken)
    with pytest.raises(OSError, match="disk full"):
        export_model(saved_tiny_run, "theta0", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"], "no folder, no staging"


def test_load_checks_the_weights_and_the_config(exported: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "copy"
    copy.mkdir()
    for path in exported.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    weights = load_file(str(copy / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + np.float32(1e-6)
    save_file(weights, str(copy / "model.safetensors"))
    with pytest.raises(ExportError, match="do not match config.json's hash"):
        load(copy)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(ExportError, match="config.json: not valid JSON"):
        load(copy)
    (copy / "config.json").unlink()
    with pytest.raises(ExportError, match="not a silorec model export"):
        load(copy)
    with pytest.raises(ExportError, match="neither a model export"):
        open_model(copy)


# -- recommending ------------------------------------------------------------------


def test_recommend_matches_the_runs_recall_on_the_unseen_domain(
    saved_tiny_run: Path,
    exported: Path,
    unseen,  # noqa: ANN001
) -> None:
    """The zero-shot promise: on a domain the merge never saw, recommend's top 10
    hits the test item exactly as often as the run's evaluation reported."""
    catalogue, domain, scenario = unseen
    settings = scenario.evaluation
    users = evaluation_users(domain, settings.max_users, settings.users_seed)
    cases = [domain.eval_case(int(u), "test") for u in users]
    histories = [[domain.items.ids[i] for i in history] for history, _ in cases]
    results = load_run(saved_tiny_run)
    for model in (silorec.load(exported), open_model(saved_tiny_run, "theta0")):
        recs = model.recommend_batch(histories, catalogue, k=10)
        hits = [domain.items.ids[t] in {r.item_id for r in rec}
                for (_, t), rec in zip(cases, recs, strict=True)]  # fmt: skip
        reported = results.value(model.label, UNSEEN, "test", "recall@10")
        assert float(np.mean(hits)) == pytest.approx(reported, abs=1e-12), model.label


def test_a_run_folder_and_its_export_recommend_the_same(
    saved_tiny_run: Path,
    exported: Path,
    unseen,  # noqa: ANN001
) -> None:
    catalogue, domain, _ = unseen
    history = list(domain.items.ids[:3])
    a = load(exported).recommend(history, catalogue, k=5)
    b = silorec.load(saved_tiny_run).recommend(history, catalogue, k=5)
    assert a == b and len(a) == 5
    assert all(x.score >= y.score for x, y in zip(a, a[1:], strict=False))


def test_recommend_rejects_what_it_cannot_answer(exported: Path, unseen) -> None:  # noqa: ANN001
    catalogue, domain, _ = unseen
    model = load(exported)
    known = domain.items.ids[0]
    with pytest.raises(RecommendError, match="empty"):
        model.recommend([], catalogue)
    with pytest.raises(RecommendError, match="1 item id\\(s\\) not in the catalogue.*'nope'"):
        model.recommend([known, "nope"], catalogue)
    with pytest.raises(RecommendError, match="more than the"):
        model.recommend([known], catalogue, k=len(catalogue) + 1)
    with pytest.raises(RecommendError, match="positive integer"):
        model.recommend([known], catalogue, k=0)
    with pytest.raises(RecommendError, match="not one string"):
        model.recommend(known, catalogue)
    excluded = model.recommend([known], catalogue, k=len(catalogue) - 1, exclude_history=True)
    assert known not in {r.item_id for r in excluded}


def test_catalogue_files_are_checked(tmp_path: Path) -> None:
    from silorec.data.errors import DataError

    (tmp_path / "a.csv").write_text("item_id,title\nx,One\nx,Two\n")
    with pytest.raises(DataError, match="'x' appears more than once"):
        Catalogue.from_file(tmp_path / "a.csv", ["title"])
    (tmp_path / "b.csv").write_text("item_id,colour\nx,red\n")
    with pytest.raises(DataError, match="none of the text columns title"):
        Catalogue.from_file(tmp_path / "b.csv", ["title"])
    (tmp_path / "c.csv").write_text("item_id,title,brand\nx,One,\ny,Two,B\n")
    catalogue = Catalogue.from_file(tmp_path / "c.csv", ["title", "brand"])
    assert catalogue.ids == ["x", "y"] and "nan" not in catalogue.texts[0].lower()


def test_recommend_cli_single_batch_and_user(
    saved_tiny_run: Path,
    exported: Path,
    items_csv: Path,
    unseen,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    _, domain, _ = unseen
    ids = domain.items.ids
    assert main(["recommend", str(exported), "--catalogue", str(items_csv),
                 "--history", f"{ids[0]},{ids[1]}", "-k", "3", "--json"]) == 0  # fmt: skip
    single = json.loads(capsys.readouterr().out)
    assert len(single) == 3 and {"item_id", "score"} <= set(single[0])
    histories = tmp_path / "h.txt"
    histories.write_text(f"{ids[0]}\n{ids[1]},{ids[2]}\n\n{ids[3]}\n")
    out = tmp_path / "recs.jsonl"
    assert main(["recommend", str(exported), "--catalogue", str(items_csv),
                 "--histories", str(histories), "-k", "4", "--out", str(out)]) == 0  # fmt: skip
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3] and all(len(x["items"]) == 4 for x in lines)
    capsys.readouterr()
    user = domain.user_ids[0]
    assert main(["recommend", str(saved_tiny_run), "--domain", UNSEEN, "--user", user,
                 "-k", "2"]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert f"user {user}:" in table and "   1  " in table and "   2  " in table
    assert main(["recommend", str(exported), "--catalogue", str(items_csv),
                 "--history", "nope"]) == 2  # fmt: skip
    assert "not in the catalogue" in capsys.readouterr().err


def test_data_items_writes_a_catalogue_and_test_histories(
    saved_tiny_run: Path,
    tmp_path: Path,
    unseen,  # noqa: ANN001
) -> None:
    _, domain, _ = unseen
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(load_run(saved_tiny_run).scenario_toml)
    out, hist, targets = tmp_path / "i.csv", tmp_path / "h.txt", tmp_path / "t.txt"
    assert main(["data", "items", str(scenario), "--domain", UNSEEN, "--out", str(out),
                 "--histories", str(hist), "--targets", str(targets)]) == 0  # fmt: skip
    catalogue = Catalogue.from_file(out, ["title", "brand", "category"])
    assert catalogue.ids == list(domain.items.ids)
    assert len(hist.read_text().splitlines()) == len(domain.evaluable_users())
    assert len(targets.read_text().splitlines()) == len(domain.evaluable_users())


# -- HTTP --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_http_service_answers_and_validates(exported: Path, items_csv: Path, unseen) -> None:  # noqa: ANN001
    _, domain, _ = unseen
    ids = domain.items.ids
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "silorec.cli", "serve", str(exported), "--catalogue",
         str(items_csv), "--port", str(port), "--max-k", "20"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"silorec serve exited: {server.stdout.read().decode()[-2000:]}")
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail("silorec serve did not answer within 90 s")
                time.sleep(0.3)
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["items"] == len(ids)
        assert body["model"] == read_config(exported).label
        direct = load(exported).recommend([ids[0], ids[1]], Catalogue.from_file(
            items_csv, read_config(exported).text.fields), k=5)  # fmt: skip
        answer = httpx.post(f"{base}/recommend", json={"history": [ids[0], ids[1]], "k": 5})
        assert answer.status_code == 200
        assert [x["item_id"] for x in answer.json()["items"]] == [r.item_id for r in direct]
        batch = httpx.post(f"{base}/recommend/batch",
                           json={"histories": [[ids[0]], [ids[2], ids[3]]], "k": 3})  # fmt: skip
        assert batch.status_code == 200 and [len(r["items"]) for r in batch.json()["results"]] == [
            3,
            3,
        ]
        for request, needle in (
            ({"history": [], "k": 5}, "empty"),
            ({"history": ["nope"], "k": 5}, "not in the catalogue"),
            ({"history": [ids[0]], "k": 21}, "above this service's limit of 20"),
            ({"history": [ids[0]], "k": 0}, "greater than or equal to 1"),
            ({"history": [ids[0]], "extra": 1}, "Extra inputs"),
        ):
            reply = httpx.post(f"{base}/recommend", json=request)
            assert reply.status_code == 422, request
            assert needle in json.dumps(reply.json()), (request, reply.json())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
