"""silorec.results.io: atomic writers, run directories, write_run/load_run."""

from __future__ import annotations

import csv
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from results_example import example_results

import silorec.results.io as rio
from silorec.results import (
    ID_COLUMNS,
    ResultRow,
    ResultsError,
    ResultsWriteError,
    RunResults,
    load_run,
    new_run_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_run,
    write_text_atomic,
)

EXPECTED = [
    "results.json",
    "results.csv",
    "report.md",
    "plots/recall10_by_domain.png",
    "plots/cross_domain_matrix.png",
]


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# -- atomic writers ---------------------------------------------------------------


def test_atomic_writers_write_and_replace(tmp_path: Path) -> None:
    p = write_text_atomic(tmp_path / "sub" / "a.txt", "one\ntwo\n")
    assert p.read_bytes() == b"one\ntwo\n"  # folder created, no newline translation
    write_text_atomic(p, "three")
    assert p.read_text() == "three"
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "c.json", {"é": [1, 2.5, None]})
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8")) == {"é": [1, 2.5, None]}
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_atomic_write_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    target = tmp_path / "results.json"
    write_text_atomic(target, "old content")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(f"simulated failure in {fail_in}")

    if fail_in == "write":
        # Fail after part of the data reached the temporary file.
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, fh: object) -> None:
                self._fh = fh

            def __enter__(self) -> HalfWriter:
                return self

            def __exit__(self, *exc: object) -> None:
                self._fh.close()  # type: ignore[attr-defined]

            def write(self, data: bytes) -> None:
                self._fh.write(data[: len(data) // 2])  # type: ignore[attr-defined]
                self._fh.flush()  # type: ignore[attr-defined]
                raise OSError("simulated failure in write (disk full)")

        monkeypatch.setattr(rio.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(rio.os, fail_in, boom)
    with pytest.raises(OSError, match="simulated failure"):
        write_text_atomic(target, "new content that is much longer than the old one")
    monkeypatch.undo()
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["results.json"]


def test_json_writer_refuses_nan_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"a": float("nan")})
    assert os.listdir(tmp_path) == []


# -- run directories --------------------------------------------------------------


def test_new_run_dir_is_unique_and_named_by_time(tmp_path: Path) -> None:
    now = datetime(2025, 3, 4, 5, 6, 7)
    a = new_run_dir(tmp_path / "runs", "quickstart", now=now)
    b = new_run_dir(tmp_path / "runs", "quickstart", now=now)
    c = new_run_dir(tmp_path / "runs", "quickstart", now=now)
    assert a.name == "quickstart-20250304-050607"
    assert b.name == "quickstart-20250304-050607-1"
    assert c.name == "quickstart-20250304-050607-2"
    assert all(p.is_dir() and not any(p.iterdir()) for p in (a, b, c))
    odd = new_run_dir(tmp_path, "../we ird/name", now=now)
    assert odd.parent == tmp_path
    assert odd.name == "we-ird-name-20250304-050607"
    assert new_run_dir(tmp_path, "x").name.startswith("x-2")  # real clock


# -- write_run / load_run ---------------------------------------------------------


def test_write_run_writes_every_file_and_loads_back_equal(tmp_path: Path) -> None:
    r = example_results()
    run_dir = tmp_path / "run"
    written = write_run(r, run_dir)
    assert [str(p.relative_to(run_dir)) for p in written] == EXPECTED
    assert _all_files(run_dir) == sorted(EXPECTED)
    assert load_run(run_dir) == r
    assert load_run(run_dir / "results.json") == r
    # strict JSON: no NaN/Infinity constants anywhere
    json.loads((run_dir / "results.json").read_text(), parse_constant=_no_constants)
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "plots/recall10_by_domain.png" in report
    assert "plots/cross_domain_matrix.png" in report


def _no_constants(name: str) -> None:
    raise AssertionError(f"results.json holds the non-standard constant {name}")


def test_results_csv_is_the_tidy_table(tmp_path: Path) -> None:
    r = example_results()
    write_run(r, tmp_path, plots=False)
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as fh:
        records = list(csv.reader(fh))
    header, body = records[0], records[1:]
    metrics = r.metric_names()
    assert header == [*ID_COLUMNS, *metrics]
    assert header[: len(ID_COLUMNS)] == [
        "run_id",
        "scenario",
        "model",
        "kind",
        "source",
        "domain",
        "domain_role",
        "split",
        "n_users",
    ]
    assert len(body) == len(r.rows) == 3 * 2 * 4 + 3 * 4 * 2
    frame = pd.read_csv(tmp_path / "results.csv")
    pd.testing.assert_frame_equal(frame, r.tidy_frame(), check_dtype=False)
    one = frame[(frame.model == "average") & (frame.domain == "office") & (frame.split == "test")]
    assert one["recall@10"].item() == pytest.approx(0.026)
    assert not (tmp_path / "plots").exists()


def test_a_failing_write_midway_leaves_old_files_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = example_results()
    write_run(old, tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in EXPECTED}

    new = example_results(failed_domain="toys")
    real_replace = os.replace

    def failing_replace(src: str, dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "results.csv":
            raise OSError("simulated: disk full")
        real_replace(src, dst)

    monkeypatch.setattr(rio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_run(new, tmp_path)
    monkeypatch.undo()
    assert _temp_files(tmp_path) == []
    # results.csv failed, so results.json (written last) is still the old one...
    assert (tmp_path / "results.csv").read_bytes() == before["results.csv"]
    assert (tmp_path / "results.json").read_bytes() == before["results.json"]
    assert load_run(tmp_path) == old
    # ...while the files written before it are complete new files.
    assert (tmp_path / "report.md").read_bytes() != before["report.md"]
    assert "toys" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_unserialisable_results_write_nothing(tmp_path: Path) -> None:
    r = example_results()
    object.__setattr__(r, "base", {"bad": object()})  # bypass validation on purpose
    with pytest.raises(Exception):  # noqa: B017 - pydantic's serialisation error
        write_run(r, tmp_path / "run")
    assert not (tmp_path / "run").exists() or _all_files(tmp_path / "run") == []


def test_report_failure_still_writes_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import silorec.results.run_writer as report  # write_run's own reference

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("report bug")

    monkeypatch.setattr(report, "render_report", broken)
    with pytest.raises(ResultsWriteError, match="report bug") as info:
        write_run(example_results(), tmp_path)
    assert (tmp_path / "results.json").is_file()
    assert (tmp_path / "results.csv").is_file()
    assert not (tmp_path / "report.md").exists()
    assert tmp_path / "results.json" in info.value.written
    assert _temp_files(tmp_path) == []


def test_plot_failure_still_writes_data_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import silorec.results.run_writer as plots  # write_run's own reference

    def broken(*args: object, **kwargs: object) -> dict[str, bytes]:
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(plots, "render_plots", broken)
    with pytest.raises(ResultsWriteError, match="matplotlib exploded"):
        write_run(example_results(), tmp_path)
    assert _all_files(tmp_path) == ["report.md", "results.csv", "results.json"]
    assert ".png" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_plot_with_nothing_to_show_removes_a_stale_file(tmp_path: Path) -> None:
    write_run(example_results(), tmp_path)
    assert (tmp_path / "plots" / "cross_domain_matrix.png").is_file()
    only_base = RunResults(
        run_id="r",
        scenario_name="s",
        rows=[
            ResultRow(
                model="theta0",
                kind="base",
                domain="a",
                domain_role="merged",
                split="test",
                n_users=1,
                metrics={"recall@10": 0.1},
            )
        ],
    )
    written = write_run(only_base, tmp_path)
    assert not (tmp_path / "plots" / "cross_domain_matrix.png").exists()
    assert tmp_path / "plots" / "recall10_by_domain.png" in written
    assert "cross_domain_matrix" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_load_run_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="results.json"):
        load_run(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_run(tmp_path)

    bad = tmp_path / "results.json"
    bad.write_text('{"run_id": "r",\n  oops}')
    with pytest.raises(ResultsError, match=r"results\.json is not valid JSON \(line 2"):
        load_run(tmp_path)

    bad.write_text("[1, 2]")
    with pytest.raises(ResultsError, match="JSON object"):
        load_run(tmp_path)

    data = example_results().model_dump(mode="json")
    data["rows"][3]["split"] = "train"
    bad.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"results\.json is not a valid .*rows\.3\.split"):
        load_run(tmp_path)

    data = example_results().model_dump(mode="json")
    data["schema_version"] = 99
    bad.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="newer"):
        load_run(tmp_path)
