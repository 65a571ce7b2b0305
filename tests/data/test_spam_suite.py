"""The spam GX suite passes on the real collection and fails on broken copies of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from projects.core.cli import StageError
from projects.core.params import load_params
from projects.core.validation import failures, write_report
from projects.spam.config import SpamParams
from projects.spam.data import write_messages
from projects.spam.prepare import split
from projects.spam.validate import validate


@pytest.fixture(scope="module")
def params() -> SpamParams:
    return load_params("spam", SpamParams)


def _validate(tmp_path: Path, raw: pd.DataFrame | None, params: SpamParams) -> list[dict]:
    """Write `raw` (or leave it missing), split it as the pipeline does, validate all three."""
    raw_file = tmp_path / "raw.csv"
    if raw is not None:
        write_messages(raw, raw_file)
        train, test = split(raw, params.prepare.test_size, params.prepare.seed)
        write_messages(train, tmp_path / "train.csv")
        write_messages(test, tmp_path / "test.csv")
    return validate(
        raw_file,
        tmp_path / "train.csv",
        tmp_path / "test.csv",
        params.validation,
        params.prepare.test_size,
    )


def test_the_real_collection_and_its_splits_pass(tmp_path, spam_messages, params) -> None:
    assert len(spam_messages) == 5574
    assert spam_messages.label.value_counts().to_dict() == {"ham": 4827, "spam": 747}
    reports = _validate(tmp_path, spam_messages, params)
    assert [r["success"] for r in reports] == [True, True, True], [failures(r) for r in reports]
    write_report(reports, tmp_path / "report.json")  # raises if anything failed
    assert (tmp_path / "report.json").read_text() == (tmp_path / "report.json").read_text()


def _nulls(m: pd.DataFrame) -> pd.DataFrame:
    return m.assign(text=m.text.where(m.index % 50 != 0, None))


def _unknown_label(m: pd.DataFrame) -> pd.DataFrame:
    return m.assign(label=m.label.where(m.index % 100 != 0, "promo"))


BROKEN: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "missing column": (lambda m: m.drop(columns="label"), "expect_table_columns_to_match"),
    "nulls": (_nulls, "text: expect_column_value"),
    "unknown label": (_unknown_label, "label: expect_column_values_to_be_in_set"),
    "truncated": (lambda m: m.head(400), "expect_table_row_count_to_be_between"),
    "no spam": (lambda m: m[m.label == "ham"], "is_spam: expect_column_mean_to_be_between"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_copies_fail_naming_the_problem(tmp_path, spam_messages, params, case) -> None:
    breaker, expected = BROKEN[case]
    reports = _validate(tmp_path, breaker(spam_messages).reset_index(drop=True), params)
    assert not reports[0]["success"]
    with pytest.raises(StageError, match=expected) as raised:
        write_report(reports, tmp_path / "report.json")
    assert "raw.csv" in str(raised.value)
    assert (tmp_path / "report.json").exists()


@pytest.mark.parametrize(("content", "problem"), [(None, "file is missing"), ("", "file is empty")])
def test_missing_or_empty_files_fail_naming_the_file(tmp_path, params, content, problem) -> None:
    if content is not None:
        for name in ("raw.csv", "train.csv", "test.csv"):
            (tmp_path / name).write_text(content)
    reports = validate(
        tmp_path / "raw.csv",
        tmp_path / "train.csv",
        tmp_path / "test.csv",
        params.validation,
        params.prepare.test_size,
    )
    with pytest.raises(StageError, match=f"raw.csv: {problem}"):
        write_report(reports, tmp_path / "report.json")
