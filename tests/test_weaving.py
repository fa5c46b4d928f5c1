"""WeaveRec, data-isolated: LoRA adapters as a model part, the weaving schedule, the
scenario's [weave] section, the wire rules for adapters, and whole weaving runs
through the in-process engine (honest and with a hostile node)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message

from silorec.audit.payload import Payload, WireArray, WireRecord, describe
from silorec.audit.policy import WireExpectations, check_reply
from silorec.cli import main
from silorec.models import WeightsError, build_model, get_weights, set_weights
from silorec.models.lora import (
    adapter_attached,
    adapter_delta,
    adapter_spec,
    fold_adapter,
    init_adapter,
)
from silorec.results import load_run
from silorec.scenario import ModelSettings, Scenario, load_scenario
from silorec.weaving import Hybrid, pack_steps, visit_order
from silorec.wire import protocol
from silorec.wire.replies import DescribeReply, ReplyRejected, read_adapter_train

HERE = Path(__file__).parent
TINY = HERE / "scenarios" / "tiny.toml"
SETTINGS = ModelSettings(dim=16, layers=1, heads=2, max_len=10)
TEXT_DIM = 24


def small_model() -> torch.nn.Module:
    return build_model(SETTINGS, TEXT_DIM, seed=3).eval()


def trained_adapter(model: torch.nn.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """An adapter whose B is not zero (as after training)."""
    adapter = init_adapter(model, 4, seed=seed)
    rng = np.random.default_rng(seed)
    return {k: (rng.normal(size=v.shape).astype(np.float32) * 0.1 if k.endswith("lora_up")
                else v) for k, v in adapter.items()}  # fmt: skip


def scores(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    text = torch.randn(30, TEXT_DIM)
    histories = torch.randint(0, 30, (5, 10))
    with torch.no_grad():
        states, items = model(text, histories)
        return model.scores(states[:, -1], items)


# -- adapters ----------------------------------------------------------------------------


def test_a_fresh_adapter_changes_nothing_and_covers_every_linear_layer() -> None:
    model = small_model()
    adapter = init_adapter(model, 4, seed=0)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(k.rsplit(".", 1)[0] for k in adapter if k.endswith("lora_down")) == sorted(
        linears
    )
    assert {k: (v.shape, str(v.dtype)) for k, v in adapter.items()} == {
        k: (shape, dtype) for k, (shape, dtype) in adapter_spec(model, 4).items()
    }
    base = get_weights(model)
    folded = fold_adapter(base, adapter, None)
    assert all(np.array_equal(folded[k], base[k]) for k in base)


def test_the_adapted_forward_is_exactly_the_folded_model_and_the_base_comes_back() -> None:
    model = small_model()
    base = get_weights(model)
    adapter = trained_adapter(model)
    with adapter_attached(model, adapter, alpha=8.0):
        adapted = scores(model)
    assert all(np.array_equal(get_weights(model)[k], base[k]) for k in base)  # base again
    folded = small_model()
    set_weights(folded, fold_adapter(base, adapter, alpha=8.0))
    torch.testing.assert_close(scores(folded), adapted, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scores(model), adapted)  # the adapter did something


def test_only_the_adapter_trains() -> None:
    model = small_model()
    base = get_weights(model)
    with adapter_attached(model, init_adapter(model, 4, seed=0), alpha=None) as current:
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=0.5)
        model.train()
        states, items = model(torch.randn(30, TEXT_DIM), torch.randint(0, 30, (4, 10)))
        model.scores(states[:, -1], items).logsumexp(-1).mean().backward()
        optimizer.step()
        after = current()
    assert sum(p.numel() for p in trainable) == sum(a.size for a in after.values())
    assert any(np.abs(v).sum() > 0 for k, v in after.items() if k.endswith("lora_up"))
    assert all(np.array_equal(get_weights(model)[k], base[k]) for k in base)
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_a_wrongly_shaped_adapter_is_refused_with_the_layer_named() -> None:
    model = small_model()
    adapter = init_adapter(model, 4, seed=0)
    name = next(iter(adapter))
    adapter[name] = adapter[name][:, :-1]
    with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
        with adapter_attached(model, adapter, alpha=None):
            pass


def test_merging_is_exact_on_delta_w_not_on_a_and_b() -> None:
    """The mean of folded models is θ0 + mean ΔW; averaging A and B would not be."""
    model = small_model()
    base = get_weights(model)
    first, second = trained_adapter(model, 1), trained_adapter(model, 2)
    mean_folded = {k: (fold_adapter(base, first, None)[k] + fold_adapter(base, second, None)[k])
                   / 2 for k in base}  # fmt: skip
    deltas = [adapter_delta(first, None), adapter_delta(second, None)]
    for name, delta in deltas[0].items():
        np.testing.assert_allclose(mean_folded[name], base[name] + (delta + deltas[1][name]) / 2,
                                   atol=1e-6)  # fmt: skip
    averaged_ab = {k: (first[k] + second[k]) / 2 for k in first}
    naive = fold_adapter(base, averaged_ab, None)
    assert max(np.abs(naive[k] - mean_folded[k]).max() for k in deltas[0]) > 1e-3


def test_the_text_encoder_backbone_takes_adapters_too() -> None:
    settings = load_scenario(HERE / "scenarios" / "tiny_encoder.toml").model
    model = build_model(settings, 384, seed=0).eval()
    base = get_weights(model)
    adapter = trained_adapter(model)
    assert any(".attention.self.query.lora_down" in k for k in adapter)
    with adapter_attached(model, adapter, alpha=None):
        pass
    assert all(np.array_equal(get_weights(model)[k], base[k]) for k in base)
    assert set(fold_adapter(base, adapter, None)) == set(base)


# -- the schedule ----------------------------------------------------------------------


@pytest.mark.parametrize("order", ["source-first", "target-first"])
@pytest.mark.parametrize("rounds", [1, 3])
def test_every_hybrid_visits_in_order_and_no_node_trains_two_at_once(
    order: str, rounds: int
) -> None:
    domains = ["a", "b", "c"]
    hybrids = [Hybrid(t, s) for t in domains for s in domains if s != t]
    steps = pack_steps(hybrids, rounds, order)  # type: ignore[arg-type]
    seen: dict[Hybrid, list[str]] = {h: [] for h in hybrids}
    for step in steps:
        assert len(step.visits) == len(set(step.visits))
        for domain, (hybrid, n) in step.visits.items():
            seen[hybrid].append(domain)
            assert n == len(seen[hybrid])
    for hybrid in hybrids:
        assert seen[hybrid] == visit_order(hybrid, rounds, order)  # type: ignore[arg-type]
    # 6 hybrids x 2R visits over 3 nodes: every node busy at every step.
    assert len(steps) == 6 * 2 * rounds // 3


def test_one_target_with_two_sources_alternates() -> None:
    steps = pack_steps([Hybrid("t", "s1"), Hybrid("t", "s2")], 1, "source-first")
    assert [sorted(s.visits) for s in steps] == [["s1", "s2"], ["t"], ["t"]]


# -- the scenario -----------------------------------------------------------------------


def tiny_with(weave: str) -> str:
    text = TINY.read_text()
    return text.replace("[[domains]]", weave + "\n[[domains]]", 1)


@pytest.mark.parametrize(
    ("weave", "message"),
    [
        ('[weave]\ntargets = ["omega"]\n', "weave.targets names omega"),
        ('[weave]\ntargets = ["delta"]\n', "unseen domains never train"),
        ('[weave]\ntargets = ["alpha"]\nsources = { alpha = ["alpha"] }\n', "the target itself"),
        ('[weave]\ntargets = ["alpha"]\nsources = { beta = ["alpha"] }\n', "non-targets: beta"),
        ('[weave]\nsources = { alpha = ["beta"] }\n', "weave.targets is empty"),
        ('[weave]\ntargets = ["alpha"]\n[privacy]\nmechanism = "dp-sgd"\nnoise_multiplier = 1.0\n',
         "dp-sgd"),
    ],
)  # fmt: skip
def test_bad_weave_sections_are_refused_with_the_field_named(
    tmp_path: Path, weave: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(tiny_with(weave))
    with pytest.raises(Exception, match=message):
        load_scenario(path)


def test_sources_default_to_every_other_merged_domain(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(
        tiny_with('[weave]\ntargets = ["alpha", "beta"]\nsources = { beta = ["gamma"] }\n')
    )
    scenario = load_scenario(path)
    assert scenario.weave_sources("alpha") == ["beta", "gamma"]
    assert scenario.weave_sources("beta") == ["gamma"]
    assert not Scenario.model_validate(
        {"name": "x", "domains": scenario.model_dump(by_alias=True)["domains"]}
    ).weave.enabled


# -- the wire ---------------------------------------------------------------------------

SPEC = {"blocks.0.attention.query.lora_down": ((4, 16), "float32"),
        "blocks.0.attention.query.lora_up": ((16, 4), "float32")}  # fmt: skip
DESCRIBED = DescribeReply("alpha", False, {"n_users": 60.0, "n_items": 40.0, "text_dim": 64.0})


def adapter_payload(arrays: dict[str, np.ndarray], n_train: float = 50.0) -> Payload:
    return Payload((
        WireRecord(protocol.INFO, "config", entries={"domain": "alpha"}),
        WireRecord(protocol.ADAPTER, "array",
                   arrays={k: WireArray.from_numpy(v) for k, v in arrays.items()}),
        WireRecord(protocol.METRICS, "metric", entries={"n_train_sequences": n_train}),
    ))  # fmt: skip


def good_adapter() -> dict[str, np.ndarray]:
    return {k: np.zeros(shape, dtype=np.float32) for k, (shape, _) in SPEC.items()}


def test_a_valid_adapter_reply_is_read() -> None:
    reply = read_adapter_train(adapter_payload(good_adapter()), domain="alpha", adapter=SPEC,
                               described=DESCRIBED)  # fmt: skip
    assert set(reply.adapter) == set(SPEC) and reply.metrics["n_train_sequences"] == 50


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: {**a, "blocks.0.attention.query.lora_up": a["blocks.0.attention.query.lora_up"]
                    .astype(np.float16)}, "float16|dtype"),
        (lambda a: {**a, "extra.lora_down": np.zeros((4, 16), np.float32)}, "extra|unexpected"),
        (lambda a: {k: v for k, v in a.items() if k.endswith("lora_down")}, "missing"),
        (lambda a: {**a, "blocks.0.attention.query.lora_up": np.full((16, 4), np.nan,
                                                                      np.float32)}, "NaN|finite"),
    ],
)  # fmt: skip
def test_a_malformed_adapter_reply_is_rejected(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReplyRejected, match=message):
        read_adapter_train(adapter_payload(edit(good_adapter())), domain="alpha", adapter=SPEC,
                           described=DESCRIBED)  # fmt: skip


def test_an_adapter_reply_cannot_claim_more_sequences_than_users() -> None:
    with pytest.raises(ReplyRejected, match="n_train_sequences"):
        read_adapter_train(adapter_payload(good_adapter(), n_train=61.0), domain="alpha",
                           adapter=SPEC, described=DESCRIBED)  # fmt: skip


def test_the_wire_policy_allows_adapters_only_in_a_weaving_scenario() -> None:
    payload = describe(adapter_payload(good_adapter()))
    weaving = WireExpectations("alpha", {}, 40, 64, adapter=SPEC)
    assert check_reply(protocol.TRAIN, payload, weaving) == []
    plain = WireExpectations("alpha", {}, 40, 64)
    assert any("adapter" in str(v) for v in check_reply(protocol.TRAIN, payload, plain))
    wrong = {**good_adapter(), "blocks.0.attention.query.lora_up": np.zeros((16, 5), np.float32)}
    assert check_reply(protocol.TRAIN, describe(adapter_payload(wrong)), weaving)


# -- whole runs -------------------------------------------------------------------------

WEAVE = """[weave]
targets = ["alpha"]
rank = 4
rounds = 2
epochs_per_visit = 1
adapter_epochs = 2
fedavg_rounds = 1
pooled_oracles = true

[[weave.fusion]]
method = "average"
label = "uniform"

[[weave.fusion]]
method = "task_arithmetic"
lambda = 0.5
"""


@pytest.fixture(scope="module")
def weave_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from silorec.engine.local import run_inprocess
    from silorec.engine.project import find_project

    base = tmp_path_factory.mktemp("weave")
    scenario = base / "weave.toml"
    scenario.write_text(tiny_with(WEAVE))
    return run_inprocess(scenario, find_project(HERE), out=base / "run")


def test_a_weaving_run_evaluates_every_weaving_model_with_its_baselines(weave_run: Path) -> None:
    results = load_run(weave_run)
    assert results.status == "completed", results.failures
    expected = {"adapter:alpha", "adapter:beta", "adapter:gamma", "hybrid:alpha+beta",
                "hybrid:alpha+gamma", "weave:alpha uniform",
                "weave:alpha task_arithmetic(lambda=0.5)", "adapters merged uniform",
                "adapters merged task_arithmetic(lambda=0.5)", "adapters fedavg"}  # fmt: skip
    assert expected <= set(results.models())
    kinds = results.model_kinds()
    assert {kinds[m] for m in expected} == {"adapter", "weave"}
    target = results.weave["targets"]["alpha"]
    assert target["sources"] == ["beta", "gamma"] and target["target_only"] == "adapter:alpha"
    assert sorted(target["fused"]) == ["weave:alpha task_arithmetic(lambda=0.5)",
                                       "weave:alpha uniform"]  # fmt: skip
    for label in expected:
        assert results.value(label, "alpha", "test", "recall@10") is not None, label
    report = (weave_run / "report.md").read_text()
    assert "## WeaveRec, data-isolated" in report and "`weave:alpha uniform`" in report


def test_the_pooled_oracles_are_labelled_and_evaluated(weave_run: Path) -> None:
    results = load_run(weave_run)
    kinds = results.model_kinds()
    assert kinds["pooled adapter (oracle)"] == kinds["pooled weave:alpha (oracle)"] == "oracle"
    assert results.weave["targets"]["alpha"]["pooled_weave"] == "pooled weave:alpha (oracle)"
    assert results.weave["oracles"]["breaks_isolation"] is True
    assert set(results.weave["oracles"]["seconds"]) == {
        "pooled adapter (oracle)", "alpha+beta", "alpha+gamma"}  # fmt: skip
    assert results.value("pooled weave:alpha (oracle)", "alpha", "test", "recall@10") is not None
    assert "pooled WeaveRec (oracle: breaks isolation)" in (weave_run / "report.md").read_text()


def test_the_benchmark_prints_every_target_with_its_checks(weave_run: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_weave", HERE.parent / "benchmarks"
                                                  / "bench_weave.py")  # fmt: skip
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(weave_run)]) == 0
    out = capsys.readouterr().out
    assert "### Target `alpha`" in out and "`adapter:alpha`" in out
    assert out.count("- alpha: `weave:alpha") == 3  # target-only, plain merge, pooled oracle
    assert ("PASS" in out) or ("MISS" in out)


def test_weaving_moves_only_adapters_up_and_follows_the_schedule(weave_run: Path) -> None:
    results = load_run(weave_run)
    info = results.weave
    adapter_bytes, model_bytes = info["adapter_bytes"], info["model_bytes"]
    assert adapter_bytes < model_bytes
    weaving = [s for s in info["steps"] if s["group"].startswith("weave: step")]
    # Two hybrids, 2 rounds of (source, target): sources together, then alpha twice.
    assert [sorted(s["visits"]) for s in weaving] == [["beta", "gamma"], ["alpha"], ["alpha", "beta"],
                                                      ["alpha", "gamma"], ["alpha"]]  # fmt: skip
    for step in info["steps"]:
        visits = len(step["visits"])
        # Up: one adapter and a few metrics per visit, never a model.
        assert visits * adapter_bytes <= step["bytes_received"] < visits * (adapter_bytes + 20_000)
        assert step["bytes_sent"] >= visits * (adapter_bytes + model_bytes)


def test_hybrids_differ_from_both_parents_and_fusion_is_their_mean(weave_run: Path) -> None:
    index = json.loads((weave_run / "models" / "index.json").read_text())
    files = {entry["label"]: weave_run / "models" / entry["file"] for entry in index}

    def load(label: str) -> dict[str, np.ndarray]:
        return dict(np.load(files[label]))

    hybrid, own, source, base = (load(x) for x in ("hybrid:alpha+beta", "adapter:alpha",
                                                  "adapter:beta", "theta0"))  # fmt: skip
    name = "blocks.0.attention.query.weight"
    for other in (own, source, base):
        assert np.abs(hybrid[name] - other[name]).max() > 1e-6
    fused = load("weave:alpha uniform")
    parts = [own, hybrid, load("hybrid:alpha+gamma")]
    np.testing.assert_allclose(fused[name], sum(p[name] for p in parts) / 3, atol=1e-6)
    # Layers without an adapter (norms, positions) stay θ0's in every weaving model.
    assert np.array_equal(fused["final_norm.weight"], base["final_norm.weight"])


def test_the_audit_passes_on_a_weaving_run(weave_run: Path) -> None:
    code = main(["audit", str(weave_run)])
    report = json.loads((weave_run / "audit.json").read_text())
    assert code == 0 and report["verdict"] == "PASS", report["findings"]


def test_a_node_returning_a_float16_adapter_costs_only_its_hybrid(tmp_path: Path) -> None:
    from test_hostile_replies import run_hostile

    scenario = tmp_path / "weave.toml"
    scenario.write_text(tiny_with(WEAVE.replace("fedavg_rounds = 1", "fedavg_rounds = 0")))

    def to_float16(reply: Message) -> None:
        if protocol.ADAPTER not in reply.content:
            return
        record = reply.content[protocol.ADAPTER]
        reply.content[protocol.ADAPTER] = ArrayRecord(
            {k: Array(v.numpy().astype(np.float16)) for k, v in record.items()}
        )

    run = run_hostile(tmp_path, protocol.TRAIN, to_float16, scenario=scenario)
    results = load_run(run)
    assert results.status == "completed"
    reasons = " ".join(f.reason for f in results.failures)
    assert "rejected adapter" in reasons and "hybrid alpha+beta dropped" in reasons
    models = set(results.models())
    assert "hybrid:alpha+gamma" in models and "hybrid:alpha+beta" not in models
    assert "weave:alpha uniform" in models  # alpha's adapter and the gamma hybrid
    assert "individual:beta" in models  # the other phases are untouched
