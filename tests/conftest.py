"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project root (holds pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def amazon_dir() -> Path:
    """``../shared/datasets/amazon-mergerec``: the real MergeRec Amazon archives.

    CI always has it, so a missing folder fails there; elsewhere the test is skipped.
    """
    path = Path(os.environ.get("SILOREC_AMAZON_DIR", SHARED_DATASETS / "amazon-mergerec"))
    if not (path / "Beauty.tar.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared datasets, but {path} is missing")
        pytest.skip(f"real Amazon data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test session gets its own silorec cache, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "silorec-cache"
    monkeypatch.setenv("SILOREC_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tests use tiny models, which run fastest on one thread; two threads on a busy
    2-core machine mostly wait for each other (measured 10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def saved_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One in-process run of tests/scenarios/tiny.toml with its models, merge inputs and
    merge card, shared (read-only) by the provenance and serving tests; copy it before
    changing anything in it."""
    from silorec.engine.local import run_inprocess
    from silorec.engine.project import find_project

    tests = Path(__file__).parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SILOREC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "silorec-cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        return run_inprocess(
            tests / "scenarios" / "tiny.toml",
            find_project(tests),
            out=tmp_path_factory.mktemp("saved-tiny") / "run",
        )
