"""The traffic GX suites pass on the default data and on a small simulated log, and fail on
broken copies of the latter, naming the check."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from projects.core import paths
from projects.core.cli import StageError
from projects.core.validation import Report, failures, write_report
from projects.traffic import config, prepare
from projects.traffic.config import ValidateParams
from projects.traffic.data import LABELS_FILE, LOG_FILE
from projects.traffic.prepare import PARSE_FILE
from projects.traffic.simulator import write
from projects.traffic.validate import validate
from tests.data.broken import Edit, copy_with_edits

APACHE_ERRORS = paths.ROOT.parent / "shared" / "reference" / "loghub" / "Apache_2k.log"
# the smallest simulation (fast) with every client kind in its test split
SMALL = {"clients": 300, "seed": 3}


def other_format_lines(n: int) -> list[str]:
    """`n` lines of an Apache error log: Loghub's real ones when they are beside us."""
    if APACHE_ERRORS.exists():
        real = APACHE_ERRORS.read_text(encoding="utf-8").splitlines()
        return [real[i % len(real)] for i in range(n)]
    return [
        f"[Sun Dec 04 04:{i // 60 % 60:02d}:{i % 60:02d} 2005] [error] mod_jk child in state {i}"
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def params() -> ValidateParams:
    return config.load().validation


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory) -> Path:
    """A small simulated access log and its labels."""
    raw = tmp_path_factory.mktemp("traffic") / "raw"
    write(raw, **SMALL)
    return raw


def _validate(
    source: Path, tmp_path: Path, params: ValidateParams, edits: dict[str, Edit | None]
) -> list[Report]:
    """Copy the raw files with `edits` applied to their lines (None deletes the file), prepare
    as the pipeline does, and validate."""
    raw = copy_with_edits(source, tmp_path / "raw", (LOG_FILE, LABELS_FILE), edits)
    prepare.main(raw_dir=raw, out_dir=tmp_path / "prepared")
    return validate(tmp_path / "prepared", params)


def _failed(reports: list[Report]) -> str:
    return "\n".join(line for report in reports for line in failures(report))


def test_the_default_data_passes(tmp_path, params) -> None:
    if not (config.RAW_DIR / LOG_FILE).exists():
        pytest.fail(f"{config.RAW_DIR} is missing: run `make setup` (make test does) first")
    reports = _validate(config.RAW_DIR, tmp_path, params, {})
    assert all(r["success"] for r in reports), _failed(reports)
    write_report(reports, tmp_path / "report.json")  # raises if anything failed


def test_a_small_simulated_log_passes(tmp_path, params, small_raw) -> None:
    reports = _validate(small_raw, tmp_path, params, {})
    assert all(r["success"] for r in reports), _failed(reports)
    assert [r["suite"] for r in reports] == [
        "traffic_parse", "traffic_train", "traffic_validation", "traffic_test"
    ]  # fmt: skip


def test_a_few_unparseable_lines_pass_and_are_named(tmp_path, params, small_raw) -> None:
    lines = len((small_raw / LOG_FILE).read_text().splitlines())
    edits = {LOG_FILE: lambda log: [*log, *other_format_lines(100)]}
    reports = _validate(small_raw, tmp_path, params, edits)
    assert all(r["success"] for r in reports), _failed(reports)
    summary = json.loads((tmp_path / "prepared" / PARSE_FILE).read_text())
    assert (summary["lines"], summary["parsed"], summary["unparsed"]) == (lines + 100, lines, 100)
    assert summary["bad_lines"][0].startswith(f"{LOG_FILE}:{lines + 1}: another format")
    assert len(summary["bad_lines"]) == prepare.SHOWN_BAD


def _labels(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Edit:
    """An edit of the labels file as a frame."""

    def edit(lines: list[str]) -> list[str]:
        text = "\n".join(lines) + "\n"
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        return change(frame).to_csv(index=False).splitlines()

    return edit


def _rename(column: str, old: str, new: str) -> Edit:
    return _labels(lambda f: f.assign(**{column: f[column].replace(old, new)}))


BROKEN: dict[str, tuple[dict[str, Edit | None], str]] = {
    "labels missing for the last lines": (
        {LABELS_FILE: lambda lines: lines[:-500]},
        "client_kind: expect_column_values_to_not_be_null",
    ),
    "an unknown client kind": (
        {LABELS_FILE: _rename("client_kind", "human", "robot")},
        "client_kind: expect_column_values_to_be_in_set",
    ),
    "an unknown request kind": (
        {LABELS_FILE: _rename("request_kind", "sqli", "sql")},
        "request_kind: expect_column_values_to_be_in_set",
    ),
    "every request an attack": (
        {LABELS_FILE: _labels(lambda f: f.assign(is_attack="1"))},
        "is_attack: expect_column_mean_to_be_between",
    ),
    "no request an attack": (
        {LABELS_FILE: _labels(lambda f: f.assign(is_attack="0"))},
        "is_attack: expect_column_mean_to_be_between",
    ),
    "a client kind absent from the test split": (
        {LABELS_FILE: _rename("client_kind", "nat", "human")},
        "test.parquet: client_kind: expect_column_distinct_values_to_contain_set",
    ),
    "a line labelled twice": (
        {LABELS_FILE: lambda lines: [*lines, lines[1]]},
        "line: expect_column_values_to_be_unique",
    ),
    "too many lines in another format": (
        {LOG_FILE: lambda lines: [*lines, *other_format_lines(2000)]},
        "parse.json: unparsed_share: expect_column_values_to_be_between",
    ),
    "an empty log": (
        {LOG_FILE: lambda lines: []},
        "parse.json: parsed: expect_column_values_to_be_between",
    ),
    "a missing log": ({LOG_FILE: None}, "parse.json: parsed: expect_column_values_to_be_between"),
    "a missing labels file": (
        {LABELS_FILE: None},
        "client_kind: expect_column_values_to_not_be_null",
    ),
    "labels without a column": (
        {LABELS_FILE: _labels(lambda f: f.drop(columns="is_attack"))},
        "client_kind: expect_column_values_to_not_be_null",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_copies_fail_naming_the_check(tmp_path, params, small_raw, case: str) -> None:
    edits, expected = BROKEN[case]
    reports = _validate(small_raw, tmp_path, params, edits)
    assert expected in _failed(reports)
    with pytest.raises(StageError, match="data validation failed"):
        write_report(reports, tmp_path / "report.json")
