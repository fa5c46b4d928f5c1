"""Scenario schema and loader: every mistake is reported with the file and the key."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from silorec.merging.registry import available_methods
from silorec.scenario import (
    DEFAULT_SCENARIO,
    MergeSpec,
    Scenario,
    ScenarioError,
    builtin_scenario_text,
    load_scenario,
    load_scenario_with_text,
    parse_scenario_text,
    resolve_scenario_path,
)

TWO_DOMAINS = """
[[domains]]
name = "books"
data = { kind = "synthetic", seed = 1 }

[[domains]]
name = "toys"
data = { kind = "synthetic", seed = 2 }
"""


def scenario_text(sections: str = "", domains: str = TWO_DOMAINS) -> str:
    """A valid scenario with ``sections`` (TOML tables) between the name and domains."""
    return f'name = "test"\n{sections}\n{domains}'


def error_of(text: str, source: str = "test.toml") -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text, source)
    message = str(info.value)
    assert message.startswith(f"{source}: "), message
    return message


def test_a_minimal_scenario_gets_the_defaults() -> None:
    scenario = parse_scenario_text(scenario_text(), "test.toml")
    assert scenario.name == "test"
    assert [d.name for d in scenario.domains] == ["books", "toys"]
    assert scenario.model.dim == 64 and scenario.evaluation.ks == [5, 10, 20, 50]
    assert scenario.merges == []
    with pytest.raises(ValidationError):
        scenario.name = "changed"  # frozen


# -- key paths in errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "domains", "expected"),
    [
        ("[train]\nepoch = 3\n", TWO_DOMAINS, "train.epoch: unknown key"),
        ("[model]\nlayer = 3\n", TWO_DOMAINS, "model.layer: unknown key"),
        (
            "",
            TWO_DOMAINS.replace(
                '{ kind = "synthetic", seed = 2 }', '{ kind = "mergerec", pth = "x" }'
            ),
            "domains[1].data.pth: unknown key",
        ),
        (
            "",
            TWO_DOMAINS.replace("seed = 1 }", "seed = 1 }\nsubsample = { topitems = 5 }"),
            "domains[0].subsample.topitems: unknown key",
        ),
    ],
    ids=["train", "model", "data", "subsample"],
)
def test_unknown_keys_are_named_by_their_path(sections: str, domains: str, expected: str) -> None:
    message = error_of(scenario_text(sections, domains))
    assert "invalid scenario" in message
    assert expected in [line.strip() for line in message.splitlines()[1:]]


def test_unknown_top_level_key() -> None:
    assert "nme: unknown key" in error_of('nme = "x"\n' + scenario_text())


def test_a_missing_required_key_is_named() -> None:
    message = error_of(
        scenario_text("", TWO_DOMAINS.replace('kind = "synthetic", seed = 2', 'kind = "mergerec"'))
    )
    assert "domains[1].data.path: required key is missing" in message
    assert "name: required key is missing" in error_of(TWO_DOMAINS)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ('[train]\nepochs = "many"\n', "train.epochs: Input should be a valid integer"),
        ("[train]\nlr = -1.0\n", "train.lr: Input should be greater than 0"),
        ("[model]\ndim = 4\n", "model.dim: Input should be greater than or equal to 8"),
        ('[text]\nencoder = "bert"\n', "text.encoder: Input should be 'minilm' or 'hashing'"),
    ],
    ids=["str-for-int", "negative", "too-small", "not-a-choice"],
)
def test_wrong_types_and_values_name_the_key(sections: str, expected: str) -> None:
    assert expected in error_of(scenario_text(sections))


def test_a_value_where_a_table_belongs() -> None:
    assert "train: Input should be a valid dictionary" in error_of("train = 3\n" + scenario_text())


def test_wrong_value_shows_what_was_given() -> None:
    assert "(got 'many')" in error_of(scenario_text('[train]\nepochs = "many"\n'))


def test_unknown_data_kind_lists_the_kinds() -> None:
    domains = TWO_DOMAINS.replace('kind = "synthetic", seed = 2', 'kind = "ftp"')
    message = error_of(scenario_text("", domains))
    assert "domains[1].data: " in message
    assert "'ftp'" in message and "'synthetic', 'mergerec', 'generic', 'amazon-raw'" in message


def test_domain_names_must_be_slugs() -> None:
    message = error_of(scenario_text("", TWO_DOMAINS.replace('"books"', '"Books"')))
    assert "domains[0].name: String should match pattern" in message


# -- cross-field rules --------------------------------------------------------------


def test_duplicate_domain_names() -> None:
    message = error_of(scenario_text("", TWO_DOMAINS.replace('"toys"', '"books"')))
    assert "domain names must be unique; repeated: books" in message


def test_every_domain_unseen() -> None:
    domains = TWO_DOMAINS.replace("data =", "unseen = true\ndata =")
    assert "at least one domain must not be `unseen`" in error_of(scenario_text("", domains))


def test_min_domains_larger_than_the_merged_domains() -> None:
    domains = (
        TWO_DOMAINS
        + '\n[[domains]]\nname = "kitchen"\nunseen = true\ndata = { kind = "synthetic" }\n'
    )
    message = error_of(scenario_text("[federation]\nmin_domains = 3\n", domains))
    assert (
        "federation.min_domains (3) exceeds the number of merged (not unseen) domains (2)"
        in message
    )
    parse_scenario_text(scenario_text("[federation]\nmin_domains = 2\n", domains), "ok.toml")


def test_the_joint_oracle_needs_saved_models() -> None:
    sections = "[baselines]\njoint = true\n[output]\nsave_models = false\n"
    assert "baselines.joint needs output.save_models = true" in error_of(scenario_text(sections))
    parse_scenario_text(scenario_text("[baselines]\njoint = true\n"), "ok.toml")


def test_dim_must_be_divisible_by_heads() -> None:
    message = error_of(scenario_text("[model]\ndim = 10\nheads = 3\n"))
    assert "model: Value error, dim (10) must be divisible by heads (3)" in message


def test_ks_must_include_10_and_are_sorted() -> None:
    message = error_of(scenario_text("[evaluation]\nks = [5, 20]\n"))
    assert "evaluation.ks: Value error, ks must include 10" in message
    assert "evaluation.ks" in error_of(scenario_text("[evaluation]\nks = [0, 10]\n"))
    scenario = parse_scenario_text(scenario_text("[evaluation]\nks = [50, 10, 5, 10]\n"), "t")
    assert scenario.evaluation.ks == [5, 10, 50]


@pytest.mark.parametrize(
    ("privacy", "expected"),
    [
        ('mechanism = "dp-sgd"\n', "needs exactly one of noise_multiplier and target_epsilon"),
        (
            'mechanism = "gaussian"\nnoise_multiplier = 1.0\ntarget_epsilon = 2.0\n',
            "needs exactly one of noise_multiplier and target_epsilon",
        ),
        ("target_epsilon = 2.0\n", "privacy.target_epsilon needs a mechanism"),
        ("budget_epsilon = 2.0\n", "privacy.budget_epsilon needs a mechanism"),
        (
            'mechanism = "dp-sgd"\ntarget_epsilon = 8.0\nbudget_epsilon = 4.0\n',
            "privacy.target_epsilon (8) exceeds privacy.budget_epsilon (4)",
        ),
        ("mia_holdout_fraction = 0.5\n", "privacy.mia_holdout_fraction: Input should be less"),
    ],
    ids=[
        "no-noise",
        "both",
        "target-without-mechanism",
        "budget-without-mechanism",
        "target-over-budget",
        "holdout-too-large",
    ],  # fmt: skip
)
def test_privacy_settings_must_be_consistent(privacy: str, expected: str) -> None:
    assert expected in error_of(scenario_text(f"[privacy]\n{privacy}"))


def test_privacy_defaults_and_a_valid_dp_section() -> None:
    default = parse_scenario_text(scenario_text(), "t").privacy
    assert default.mechanism == "none" and default.budget_epsilon is None
    assert not default.membership_inference
    privacy = parse_scenario_text(
        scenario_text(
            '[privacy]\nmechanism = "dp-sgd"\ntarget_epsilon = 4.0\nbudget_epsilon = 4.0\n'
            "membership_inference = true\n"
        ),
        "t",
    ).privacy
    assert (privacy.target_epsilon, privacy.budget_epsilon) == (4.0, 4.0)
    assert privacy.max_grad_norm == 1.0 and privacy.mia_holdout_fraction == 0.1


# -- merges ------------------------------------------------------------------------


def test_unknown_merge_parameter_is_named() -> None:
    merges = '[[merges]]\nmethod = "task_arithmetic"\nlamda = 0.3\n'
    assert "merges[0].lamda: unknown key" in error_of(scenario_text(merges))


def test_wrongly_typed_merge_parameter_is_named() -> None:
    merges = '[[merges]]\nmethod = "average"\n\n[[merges]]\nmethod = "ties"\ndensity = 2.0\n'
    assert "merges[1].density: Input should be less than or equal to 1" in error_of(
        scenario_text(merges)
    )


def test_unknown_merge_method_lists_the_methods() -> None:
    message = error_of(scenario_text('[[merges]]\nmethod = "fisher"\n'))
    assert "merges[0]" in message and "unknown merge method 'fisher'" in message
    assert f"available: {', '.join(available_methods())}" in message


def test_duplicate_merge_labels() -> None:
    merges = '[[merges]]\nmethod = "average"\n\n[[merges]]\nmethod = "average"\n'
    assert "merge labels must be unique; repeated: average" in error_of(scenario_text(merges))
    relabelled = merges + 'label = "average-again"\n'
    parse_scenario_text(scenario_text(relabelled), "ok.toml")


def test_display_label_forms() -> None:
    assert MergeSpec(method="average").display_label == "average"
    ties = MergeSpec.model_validate({"method": "ties", "lambda": 1.0, "density": 0.2})
    assert ties.display_label == "ties(density=0.2,lambda=1.0)"  # parameters sorted
    assert ties.params == {"lambda": 1.0, "density": 0.2}
    named = MergeSpec.model_validate({"method": "ties", "density": 0.2, "label": "TIES-20"})
    assert named.display_label == "TIES-20"
    assert named.params == {"density": 0.2}


# -- loading files -----------------------------------------------------------------


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[train\nepochs = 3\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: not valid TOML: ")


def test_validation_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(scenario_text("[train]\nepoch = 3\n"), encoding="utf-8")
    with pytest.raises(ScenarioError, match="train.epoch: unknown key") as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: invalid scenario")


def test_a_file_that_is_not_utf8_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ScenarioError, match="latin1.toml"):
        load_scenario(path)


def test_missing_absolute_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ScenarioError, match="nowhere.toml: scenario file not found"):
        load_scenario(path)


def test_relative_paths_try_the_working_directory_then_the_search_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir, work_dir = tmp_path / "app", tmp_path / "work"
    (app_dir / "scenarios").mkdir(parents=True)
    work_dir.mkdir()
    (app_dir / "scenarios" / "mine.toml").write_text(scenario_text(), encoding="utf-8")
    monkeypatch.chdir(work_dir)
    found = resolve_scenario_path("scenarios/mine.toml", [app_dir])
    assert found == (app_dir / "scenarios" / "mine.toml").resolve()
    assert load_scenario("scenarios/mine.toml", [app_dir]).name == "test"
    # the working directory comes first
    (work_dir / "scenarios").mkdir()
    (work_dir / "scenarios" / "mine.toml").write_text(
        scenario_text().replace('"test"', '"local"'), encoding="utf-8"
    )
    assert load_scenario("scenarios/mine.toml", [app_dir]).name == "local"
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/other.toml", [app_dir])
    message = str(info.value)
    assert message.startswith("scenarios/other.toml: scenario file not found (looked in: ")
    assert str(work_dir / "scenarios" / "other.toml") in message
    assert str(app_dir / "scenarios" / "other.toml") in message


def test_load_scenario_with_text_returns_the_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "exact.toml"
    text = "# a comment that validation drops\n" + scenario_text()
    path.write_text(text, encoding="utf-8")
    scenario, loaded_text, source = load_scenario_with_text(path)
    assert loaded_text == text and source == str(path)
    assert isinstance(scenario, Scenario)


# -- built-in and shipped scenarios -------------------------------------------------------


@pytest.mark.parametrize("ref", [None, "", "builtin:", "builtin:quickstart"])
def test_the_default_is_the_builtin_quickstart(ref: str | None) -> None:
    scenario, text, source = load_scenario_with_text(ref)
    assert DEFAULT_SCENARIO == "quickstart"
    assert source == "builtin:quickstart"
    assert text == builtin_scenario_text()
    assert scenario.name == "quickstart"
    assert [d.name for d in scenario.domains] == ["books", "toys", "kitchen"]
    assert all(d.data.kind == "synthetic" and not d.unseen for d in scenario.domains)
    assert scenario.text.encoder == "minilm"
    methods = [m.method for m in scenario.merges]
    # Issue 2 asks for these on every domain; MergeRec is the headline learned merge.
    assert methods == ["average", "task_arithmetic", "ties", "dare", "mergerec"]


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(
        ScenarioError, match=r"no built-in scenario 'nope' \(built-in: .*quickstart"
    ):
        load_scenario("builtin:nope")


def test_repo_quickstart_is_the_embedded_one(repo_root: Path) -> None:
    repo_copy = (repo_root / "scenarios" / "quickstart.toml").read_bytes()
    embedded = (repo_root / "platform" / "silorec" / "scenarios" / "quickstart.toml").read_bytes()
    assert repo_copy == embedded
    assert builtin_scenario_text().encode("utf-8") == embedded


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parents[1] / "scenarios").glob("*.toml"))
)
def test_every_shipped_scenario_validates(repo_root: Path, name: str) -> None:
    scenario = load_scenario(repo_root / "scenarios" / name)
    assert scenario.name and scenario.domains


def test_the_weaving_scenarios_weave_every_domain_in_turn(repo_root: Path) -> None:
    for name, targets in [("quickstart-weave.toml", ["books", "toys", "kitchen"]),
                          ("weaverec.toml", ["beauty", "sports", "toys"])]:  # fmt: skip
        scenario = load_scenario(repo_root / "scenarios" / name)
        assert scenario.weave.targets == targets
        for target in targets:
            assert scenario.weave_sources(target) == [t for t in targets if t != target]


def test_amazon_scenario_validates_with_pantry_unseen(repo_root: Path) -> None:
    scenario = load_scenario(repo_root / "scenarios" / "amazon.toml")
    assert scenario.name == "amazon"
    assert [d.name for d in scenario.merged_domains] == ["beauty", "sports", "toys"]
    assert [d.name for d in scenario.unseen_domains] == ["pantry"]
    assert all(d.data.kind == "mergerec" for d in scenario.domains)
    assert scenario.domain("pantry").data.path == "Pantry.tar.gz"
    assert scenario.data.root_env == "SILOREC_AMAZON_DIR"
    assert scenario.federation.min_domains <= len(scenario.merged_domains)


def test_domain_lookup_names_the_known_domains() -> None:
    scenario = parse_scenario_text(scenario_text(), "t")
    assert scenario.domain("toys") is scenario.domains[1]
    with pytest.raises(KeyError, match=r"scenario 'test' has no domain 'x' \(known: books, toys\)"):
        scenario.domain("x")


def test_node_bindings_name_known_domains_and_distinct_nodes() -> None:
    from silorec.scenario import ScenarioError, load_scenario

    base = (Path(__file__).parent / "scenarios" / "tiny.toml").read_text()
    for federation, message in [
        ("node_ids = { zeta = 7 }", "federation.node_ids names unknown domain(s) zeta"),
        ("node_ids = { alpha = 7, beta = 7 }", "binds node(s) 7 to several domains"),
    ]:
        text = base.replace("[federation]\n", f"[federation]\n{federation}\n")
        path = Path(tempfile.mkdtemp()) / "s.toml"
        path.write_text(text)
        with pytest.raises(ScenarioError, match=re.escape(message)):
            load_scenario(path)
