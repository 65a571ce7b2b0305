"""Stage `spam-validate`: the Great Expectations suite on the raw file and on both splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from projects.core import cli
from projects.core.validation import Report, validate_file, write_report
from projects.spam import config
from projects.spam.config import ValidateParams
from projects.spam.data import COLUMNS, LABELS, RAW_FILE, read_messages
from projects.spam.model import POSITIVE

app = cli.app()


def with_spam_flag(messages: pd.DataFrame) -> pd.DataFrame:
    """The messages with an `is_spam` 0/1 column, so the class balance is a column mean."""
    if "label" not in messages:
        return messages
    return messages.assign(is_spam=(messages["label"] == POSITIVE).astype(int))


def expectations(params: ValidateParams, share: float) -> list[Any]:
    """The suite for a file expected to hold `share` of the raw collection's rows."""
    import great_expectations.expectations as gxe

    suite: list[Any] = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=[*COLUMNS, "is_spam"]),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=int(params.min_rows * share), max_value=int(params.max_rows * share) + 1
        ),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_spam", min_value=params.min_spam_share, max_value=params.max_spam_share
        ),
    ]
    for column in COLUMNS:
        suite += [
            gxe.ExpectColumnValuesToNotBeNull(column=column),
            gxe.ExpectColumnValuesToBeOfType(column=column, type_="str"),
        ]
    suite += [
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS)),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=1, max_value=params.max_text_length
        ),
    ]
    return suite


def validate(
    raw: Path, train: Path, test: Path, params: ValidateParams, test_size: float
) -> list[Report]:
    """Run the suite on the raw file and each split; return one report per file."""

    def read(path: Path) -> pd.DataFrame:
        return with_spam_flag(read_messages(path))

    files = [("raw", raw, 1.0), ("train", train, 1 - test_size), ("test", test, test_size)]
    return [
        validate_file(path, read, f"spam_{name}", lambda _, s=share: expectations(params, s))
        for name, path, share in files
    ]


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the raw collection.")] = config.RAW_DIR,
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the splits.")] = (
        config.PREPARED_DIR
    ),
    report: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = (
        config.REPORTS_DIR / "validation.json"
    ),
) -> None:
    """Validate the raw collection and the splits; exit non-zero listing every failed check."""
    params = config.load()
    reports = validate(
        raw_dir / RAW_FILE,
        prepared_dir / "train.csv",
        prepared_dir / "test.csv",
        params.validation,
        params.prepare.test_size,
    )
    write_report(reports, report)


if __name__ == "__main__":
    cli.run(app)
