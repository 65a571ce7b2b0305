"""The anomaly GX suites pass on the generated data and fail on broken copies of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from projects.anomaly import config, prepare
from projects.anomaly.config import AnomalyParams
from projects.anomaly.data import LABELS_FILE, LOG_FILE
from projects.anomaly.validate import validate
from projects.core.cli import StageError
from projects.core.validation import Report, failures, write_report
from tests.data.broken import Edit, copy_with_edits


@pytest.fixture(scope="module")
def params() -> AnomalyParams:
    return config.load()


def _validate(tmp_path: Path, params: AnomalyParams, edits: dict[str, Edit | None]) -> list[Report]:
    """Copy the raw files with `edits` applied to their lines (None deletes the file), prepare
    as the pipeline does, and validate."""
    raw = copy_with_edits(config.RAW_DIR, tmp_path / "raw", (LOG_FILE, LABELS_FILE), edits)
    prepare.main(raw_dir=raw, out_dir=tmp_path / "prepared")
    return validate(raw, tmp_path / "prepared", params.validation, params.prepare)


def _failed(reports: list[Report]) -> str:
    return "\n".join(line for report in reports for line in failures(report))


def test_the_generated_data_passes(tmp_path, params) -> None:
    reports = _validate(tmp_path, params, {})
    assert all(r["success"] for r in reports), _failed(reports)
    write_report(reports, tmp_path / "report.json")  # raises if anything failed


BROKEN: dict[str, tuple[dict[str, Edit | None], str]] = {
    "unknown label": (
        {
            LABELS_FILE: lambda lines: [
                lines[0],
                *(line.replace(",Normal", ",Fine") for line in lines[1:]),
            ]
        },
        "Label: expect_column_values_to_be_in_set",
    ),
    "blocks missing from the labels": (
        {LABELS_FILE: lambda lines: lines[:-50]},
        "Label: expect_column_values_to_be_in_set",
    ),
    "empty log": ({LOG_FILE: lambda lines: []}, "lines: expect_column_values_to_be_between"),
    "lines in another format": (
        {LOG_FILE: lambda lines: [*lines[:100], "2008-11-09 20:36:15 INFO oops", *lines[100:]]},
        "malformed: expect_column_values_to_be_between",
    ),
    "missing label file": ({LABELS_FILE: None}, "anomaly_label.csv: file is missing"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_copies_fail_naming_the_problem(tmp_path, params, case: str) -> None:
    edits, expected = BROKEN[case]
    reports = _validate(tmp_path, params, edits)
    assert expected in _failed(reports)
    with pytest.raises(StageError, match="data validation failed"):
        write_report(reports, tmp_path / "report.json")
