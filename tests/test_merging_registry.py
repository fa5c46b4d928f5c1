"""The merge-method registry, parameter validation and the import boundary."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from pydantic import BaseModel, ValidationError

from silorec.merging import MergeParams, available_methods, get_method, merge, register_method
from silorec.merging.base import _METHODS

BUILTIN = [
    "adamerging",
    "average",
    "dare",
    "distill",
    "iso_c",
    "iso_cts",
    "mergerec",
    "task_arithmetic",
    "ties",
    "tsv",
    "wudi",
]


def models() -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    base = {"w": torch.tensor([1.0, -1.0, 0.5])}
    return base, [{"w": torch.tensor([2.0, -1.0, 0.0])}, {"w": torch.tensor([1.0, 1.0, 0.5])}]


def test_builtin_methods_are_available_and_described() -> None:
    assert available_methods() == BUILTIN
    for name in BUILTIN:
        method = get_method(name)
        assert method.name == name
        assert method.summary and "\n" not in method.summary
        assert issubclass(method.params_model, BaseModel)
        assert method.params_model.model_config["extra"] == "forbid"
        method.params_model.model_validate({})  # every parameter has a default


def test_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=", ".join(BUILTIN)) as info:
        get_method("tie")
    assert "did you mean 'ties'" in str(info.value)
    with pytest.raises(ValueError, match="unknown merge method"):
        merge("fisher", {}, *models(), seed=0)


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_parameter_is_an_error_naming_the_key(name: str) -> None:
    with pytest.raises(ValidationError, match="lamda") as info:
        get_method(name).params_model.model_validate({"lamda": 0.3})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_lambda_alias_and_field_name_both_work() -> None:
    ta = get_method("task_arithmetic").params_model
    assert ta.model_validate({"lambda": 0.5}).scale == 0.5
    assert ta.model_validate({"scale": 0.5}).scale == 0.5
    assert ta.model_validate({"lambda": 1}).scale == 1.0  # an integer is a fine float
    assert get_method("ties").params_model.model_validate({"lambda": 2.0}).scale == 2.0


def test_defaults() -> None:
    assert get_method("task_arithmetic").params_model().scale == 0.3
    ties = get_method("ties").params_model()
    assert (ties.density, ties.scale, ties.scope) == (0.2, 1.0, "global")
    dare = get_method("dare").params_model()
    assert (dare.drop_rate, dare.combine, dare.scale, dare.seed) == (
        0.9,
        "task_arithmetic",
        None,
        None,
    )
    assert dare.resolved_scale == 0.3
    assert get_method("dare").params_model(combine="ties").resolved_scale == 1.0
    assert get_method("dare").params_model(combine="ties", scale=0.5).resolved_scale == 0.5


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("task_arithmetic", {"lambda": "0.3"}, "lambda"),  # no coercion from strings
        ("task_arithmetic", {"lambda": True}, "lambda"),
        ("ties", {"density": 0.0}, "density"),
        ("ties", {"density": 1.2}, "density"),
        ("ties", {"scope": "layer"}, "scope"),
        ("dare", {"drop_rate": 1.0}, "drop_rate"),
        ("dare", {"drop_rate": -0.1}, "drop_rate"),
        ("dare", {"combine": "average"}, "combine"),
        ("dare", {"seed": 1.5}, "seed"),
        ("average", {"lambda": 1.0}, "lambda"),
    ],
)
def test_invalid_parameter_values(name: str, params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        get_method(name).params_model.model_validate(params)
    assert info.value.errors()[0]["loc"] == (field,)


def test_merge_method_accepts_a_model_or_a_mapping_but_not_another_model() -> None:
    base, ft = models()
    ta = get_method("task_arithmetic")
    g = torch.Generator().manual_seed(0)
    by_model = ta.merge(base, ft, ta.params_model.model_validate({"lambda": 1.0}), generator=g)
    by_mapping = ta.merge(base, ft, {"lambda": 1.0}, generator=g)
    assert torch.equal(by_model["w"], torch.tensor([2.0, 1.0, 0.0]))  # θ0 + Στ
    assert torch.equal(by_mapping["w"], by_model["w"])
    with pytest.raises(TypeError, match="TaskArithmeticParams"):
        ta.merge(base, ft, get_method("ties").params_model(), generator=g)


def test_merge_convenience_validates_and_seeds() -> None:
    base, ft = models()
    out = merge("task_arithmetic", {"lambda": 0.5}, base, ft, seed=0)
    assert torch.equal(out["w"], torch.tensor([1.5, 0.0, 0.25]))
    with pytest.raises(ValidationError, match="lamda"):
        merge("ties", {"lamda": 1.0}, base, ft, seed=0)
    a = merge("dare", {"drop_rate": 0.5}, base, ft, seed=3)
    assert torch.equal(a["w"], merge("dare", {"drop_rate": 0.5}, base, ft, seed=3)["w"])


def test_registering_a_method() -> None:
    class FirstParams(MergeParams):
        pass

    try:

        @register_method("test_first", FirstParams, summary="Take the first model.")
        def first(base, finetuned, params, *, generator):
            return {n: v.clone() for n, v in finetuned[0].items()}

        assert "test_first" in available_methods()
        base, ft = models()
        assert torch.equal(merge("test_first", {}, base, ft, seed=0)["w"], ft[0]["w"])
        with pytest.raises(ValueError, match="registered twice"):
            register_method("test_first", FirstParams, summary="Again.")(first)
    finally:
        _METHODS.pop("test_first", None)
    with pytest.raises(ValueError, match="one-line summary"):
        register_method("bad", FirstParams, summary="two\nlines")
    with pytest.raises(TypeError, match="MergeParams"):
        register_method("bad", BaseModel, summary="Not strict.")  # type: ignore[arg-type]


def test_scenario_merge_spec_validates_through_the_registry() -> None:
    from silorec.scenario import MergeSpec

    spec = MergeSpec.model_validate({"method": "ties", "density": 0.5, "lambda": 0.7})
    assert get_method(spec.method).params_model.model_validate(spec.params).scale == 0.7
    MergeSpec.model_validate({"method": "dare", "combine": "ties", "drop_rate": 0.5})
    with pytest.raises(ValueError, match="lamda"):
        MergeSpec.model_validate({"method": "task_arithmetic", "lamda": 0.3})
    with pytest.raises(ValueError, match="available: adamerging, average, dare"):
        MergeSpec.model_validate({"method": "fisher"})


def test_merging_imports_neither_flower_nor_interaction_readers() -> None:
    code = (
        "import sys, silorec.merging, silorec.merging.registry\n"
        "bad = ('flwr', 'ray', 'silorec.scenario', 'silorec.data', 'silorec.node',"
        " 'silorec.training', 'silorec.apps', 'silorec.engine')\n"
        "hits = sorted(m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in bad))\n"
        "print(','.join(hits))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == ""
