"""The recommend GX suites pass on the real MovieLens-100K and fail on broken copies of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from projects.core.cli import StageError
from projects.core.validation import Report, failures, write_report
from projects.recommend import config, prepare
from projects.recommend.config import RecommendParams
from projects.recommend.data import ITEMS_FILE, RATINGS_FILE, RAW_FILES
from projects.recommend.validate import validate
from tests.data.broken import Edit, copy_with_edits


@pytest.fixture(scope="module")
def params() -> RecommendParams:
    return config.load()


def _validate(
    tmp_path: Path, params: RecommendParams, edits: dict[str, Edit | None]
) -> list[Report]:
    """Copy the raw files with `edits` applied to their lines (None deletes the file), prepare
    the splits as the pipeline does, and validate everything."""
    raw = copy_with_edits(config.RAW_DIR, tmp_path / "raw", RAW_FILES, edits)
    prepare.main(raw_dir=raw, out_dir=tmp_path / "prepared")
    p = params.prepare
    return validate(raw, tmp_path / "prepared", params.validation, p.test_size, p.validation_size)


def _failed(reports: list[Report]) -> str:
    return "\n".join(line for report in reports for line in failures(report))


def test_the_real_data_and_its_splits_pass(tmp_path, params) -> None:
    reports = _validate(tmp_path, params, {})
    assert [r["rows"] for r in reports] == [1682, 943, 100000, 56246, 18746, 25008]
    assert all(r["success"] for r in reports), _failed(reports)
    write_report(reports, tmp_path / "report.json")  # raises if anything failed


def _set_field(line: int, field: int, value: str) -> Edit:
    def edit(lines: list[str]) -> list[str]:
        fields = lines[line].split("\t")
        fields[field] = value
        return [*lines[:line], "\t".join(fields), *lines[line + 1 :]]

    return edit


BROKEN: dict[str, tuple[dict[str, Edit | None], str]] = {
    "rating out of 1..5": (
        {RATINGS_FILE: _set_field(1, 2, "6")},
        "rating: expect_column_values_to_be_in_set",
    ),
    "duplicate user-item pair": (
        {RATINGS_FILE: lambda lines: [*lines, lines[1]]},
        "expect_compound_columns_to_be_unique",
    ),
    "missing ratings file": ({RATINGS_FILE: None}, "ml-100k.inter: file is missing"),
    "text in an id": (
        {RATINGS_FILE: _set_field(2, 0, "u186")},
        "user_id: expect_column_values_to_be_in_type_list",
    ),
    "timestamp from 1970": (
        {RATINGS_FILE: _set_field(3, 3, "0")},
        "timestamp: expect_column_values_to_be_between",
    ),
    "item without metadata": (
        {ITEMS_FILE: lambda lines: [line for line in lines if not line.startswith("242\t")]},
        "item_id: expect_column_values_to_be_in_set",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_copies_fail_naming_the_problem(tmp_path, params, case: str) -> None:
    edits, expected = BROKEN[case]
    reports = _validate(tmp_path, params, edits)
    assert expected in _failed(reports)
    with pytest.raises(StageError, match="data validation failed"):
        write_report(reports, tmp_path / "report.json")


def test_a_test_user_missing_from_train_fails(tmp_path, params) -> None:
    _validate(tmp_path, params, {})
    test_file = tmp_path / "prepared" / "test.csv"
    test_file.write_text(test_file.read_text() + "5000,1,3,880000000\n")
    p = params.prepare
    reports = validate(
        tmp_path / "raw", tmp_path / "prepared", params.validation, p.test_size, p.validation_size
    )
    assert "test.csv: user_id: expect_column_values_to_be_in_set" in _failed(reports)
