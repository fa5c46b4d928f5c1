"""`silorec scenario synth`: many synthetic domains of one latent world, sizes drawn
per domain, validated before they are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from silorec.cli import main
from silorec.scenario import load_scenario
from silorec.scenario.synth import synth_scenario

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"


def test_sizes_are_drawn_per_domain_within_the_ranges() -> None:
    scenario = synth_scenario(64, unseen=3, users=(50, 500), items=(40, 4000), lengths=(4, 30))
    domains = scenario["domains"]
    assert [d["name"] for d in domains[:3]] == ["d00", "d01", "d02"] and len(domains) == 64
    assert [d.get("unseen", False) for d in domains].count(True) == 3
    assert all(d.get("unseen") for d in domains[-3:])
    data = [d["data"] for d in domains]
    assert all(50 <= x["n_users"] <= 500 and 40 <= x["n_items"] <= 4000 for x in data)
    assert all(4 <= x["mean_length"] <= 30 for x in data)
    assert len({x["n_items"] for x in data}) > 32, "catalogue sizes differ between domains"
    assert {x["world_seed"] for x in data} == {1}, "one latent world"
    assert synth_scenario(64, seed=5) == synth_scenario(64, seed=5)
    assert synth_scenario(8, items=(40, 4000), seed=5) != synth_scenario(8, items=(40, 4000))


def test_bad_requests_fail_clearly() -> None:
    with pytest.raises(ValueError, match="at least 2 domains"):
        synth_scenario(1)
    with pytest.raises(ValueError, match="unseen must be between 0 and 3"):
        synth_scenario(4, unseen=4)
    with pytest.raises(ValueError, match="the low end is above the high end"):
        synth_scenario(4, users=(500, 50))
    with pytest.raises(ValueError):  # pydantic: a synthetic domain has at least 10 users
        synth_scenario(4, users=(2, 3))


def test_the_command_writes_a_valid_scenario_from_a_base(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "s.toml"
    assert main(["scenario", "synth", "--domains", "20", "--base", str(TINY),
                 "--items", "30", "300", "--out", str(out)]) == 0  # fmt: skip
    scenario = load_scenario(out)
    tiny = load_scenario(TINY)
    assert len(scenario.domains) == 20 and scenario.model == tiny.model
    assert [m.display_label for m in scenario.merges] == [m.display_label for m in tiny.merges]
    assert main(["scenario", "synth", "--domains", "3", "--unseen", "3",
                 "--out", str(tmp_path / "bad.toml")]) == 2  # fmt: skip
    assert "unseen must be between" in capsys.readouterr().err
    assert not (tmp_path / "bad.toml").exists()
