"""Stage `anomaly-validate`: Great Expectations suites on the labels, the parse and the sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from projects.anomaly import config
from projects.anomaly.config import ValidateParams
from projects.anomaly.data import LABELS, LABELS_FILE, SESSION_COLUMNS, read_labels, read_sessions
from projects.anomaly.prepare import PARSE_FILE, SPLITS
from projects.core import cli
from projects.core.validation import Report, validate_file, write_report

app = cli.app()

BLOCK_ID = r"^blk_-?\d+$"


def read_parse_stats(path: Path) -> pd.DataFrame:
    """prepare's parse statistics as a one-row frame."""
    return pd.DataFrame([json.loads(path.read_text())])


def with_flags(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions with `is_anomaly` (0/1) and `n_events`, for the suite's checks.

    (GX mixes up columns whose names differ only in case, hence not `events`.)
    """
    if not set(SESSION_COLUMNS) <= set(sessions.columns):
        return sessions
    return sessions.assign(
        is_anomaly=(sessions["Label"] == "Anomaly").astype(int),
        n_events=sessions["Events"].str.split().str.len().fillna(0).astype(int),
    )


def label_expectations() -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=["BlockId", "Label"]),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="BlockId"),
        gxe.ExpectColumnValuesToMatchRegex(column="BlockId", regex=BLOCK_ID),
        gxe.ExpectColumnValuesToBeInSet(column="Label", value_set=list(LABELS)),
    ]


def parse_expectations(params: ValidateParams) -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeBetween(column="lines", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="malformed", max_value=0),
        gxe.ExpectColumnValuesToBeBetween(
            column="parse_rate", min_value=params.min_parse_rate, max_value=1
        ),
    ]


def session_expectations(params: ValidateParams, share: float) -> list[Any]:
    """The suite for a sessions file expected to hold `share` of all sessions."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=[*SESSION_COLUMNS, "is_anomaly", "n_events"]
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=int(params.min_sessions * share)),
        gxe.ExpectColumnValuesToBeUnique(column="BlockId"),
        gxe.ExpectColumnValuesToMatchRegex(column="BlockId", regex=BLOCK_ID),
        # an empty label is a session the label file does not cover
        gxe.ExpectColumnValuesToBeInSet(column="Label", value_set=list(LABELS)),
        gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=1),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_anomaly",
            min_value=params.min_anomaly_share,
            max_value=params.max_anomaly_share,
        ),
    ]


def validate(
    raw_dir: Path, prepared_dir: Path, params: ValidateParams, prepare: config.PrepareParams
) -> list[Report]:
    """Run the suites on the label file, the parse statistics and each split's sessions."""
    shares = {
        "train": 1 - prepare.validation_size - prepare.test_size,
        "validation": prepare.validation_size,
        "test": prepare.test_size,
    }
    reports = [
        validate_file(raw_dir / LABELS_FILE, read_labels, "anomaly_labels",
                      lambda _: label_expectations()),
        validate_file(prepared_dir / PARSE_FILE, read_parse_stats, "anomaly_parse",
                      lambda _: parse_expectations(params)),
    ]  # fmt: skip
    for name in SPLITS:
        reports.append(
            validate_file(
                prepared_dir / f"{name}.csv",
                lambda path: with_flags(read_sessions(path)),
                f"anomaly_{name}",
                lambda _, share=shares[name]: session_expectations(params, share),
            )
        )
    return reports


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the raw log and labels.")] = (
        config.RAW_DIR
    ),
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the sessions.")] = (
        config.PREPARED_DIR
    ),
    report: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = (
        config.REPORTS_DIR / "validation.json"
    ),
) -> None:
    """Validate labels, parse and sessions; exit non-zero listing every failed check."""
    params = config.load()
    write_report(validate(raw_dir, prepared_dir, params.validation, params.prepare), report)


if __name__ == "__main__":
    cli.run(app)
