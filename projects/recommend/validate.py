"""Stage `recommend-validate`: Great Expectations suites on the raw files and on the splits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from projects.core import cli
from projects.core.validation import Report, validate_file, write_report
from projects.recommend import config
from projects.recommend.config import ValidateParams
from projects.recommend.data import (
    ITEM_FIELDS,
    ITEMS_FILE,
    RATING_COLUMNS,
    RATINGS_FILE,
    USER_COLUMNS,
    USERS_FILE,
    read_atomic,
    read_items,
    read_ratings,
)
from projects.recommend.prepare import SPLIT_FILES

app = cli.app()

INTEGER_TYPES = ["int64", "int32", "Int64", "Int32"]


def _epoch(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


def _id_column(column: str) -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column),
        gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToBeBetween(column=column, min_value=1),
    ]


def rating_expectations(
    params: ValidateParams,
    share: float,
    users: set[int] | None = None,
    items: set[int] | None = None,
) -> list[Any]:
    """The suite for a ratings file expected to hold `share` of the raw ratings.

    `users` and `items`, when given, are the ids every rating's user and item must be among.
    """
    import great_expectations.expectations as gxe

    suite: list[Any] = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(RATING_COLUMNS)),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=int(params.min_ratings * share),
            max_value=int(params.max_ratings * share) + 1,
        ),
        *_id_column("user_id"),
        *_id_column("item_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="rating"),
        gxe.ExpectColumnValuesToBeInSet(column="rating", value_set=[1, 2, 3, 4, 5]),
        gxe.ExpectColumnValuesToNotBeNull(column="timestamp"),
        gxe.ExpectColumnValuesToBeBetween(
            column="timestamp",
            min_value=_epoch(params.earliest),
            max_value=_epoch(params.latest + dt.timedelta(days=1)) - 1,
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id"]),
    ]
    if users is not None:
        suite.append(gxe.ExpectColumnValuesToBeInSet(column="user_id", value_set=sorted(users)))
    if items is not None:
        suite.append(gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=sorted(items)))
    return suite


def catalogue_expectations(id_column: str, columns: Sequence[str]) -> list[Any]:
    """The suite for the item or user metadata file."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(columns)),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *_id_column(id_column),
        gxe.ExpectColumnValuesToBeUnique(column=id_column),
    ]


def _ids(path: Path, read: Callable[[Path], pd.DataFrame], column: str) -> set[int] | None:
    """The ids in one column of a file, or None if the file cannot give them (its own report
    says why)."""
    try:
        values = read(path)[column]
    except (OSError, KeyError, ValueError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if not pd.api.types.is_integer_dtype(values):
        return None
    return set(values.dropna().astype(int).tolist())


def validate(
    raw_dir: Path,
    prepared_dir: Path,
    params: ValidateParams,
    test_size: float,
    validation_size: float,
) -> list[Report]:
    """Run the suites on the three raw files and the three splits; one report per file."""
    fit, validation, test = (prepared_dir / name for name in SPLIT_FILES)
    items = _ids(raw_dir / ITEMS_FILE, read_items, "item_id")
    fit_users = _ids(fit, read_ratings, "user_id")
    validation_users = _ids(validation, read_ratings, "user_id")
    train_users = None if fit_users is None else fit_users | (validation_users or set())
    train = 1 - test_size
    # (name, file, reader, share of the raw ratings, the users its ratings must be among)
    ratings = [
        ("ratings", raw_dir / RATINGS_FILE, read_atomic, 1.0,
         _ids(raw_dir / USERS_FILE, read_atomic, "user_id")),
        ("fit", fit, read_ratings, train * (1 - validation_size), None),
        ("validation", validation, read_ratings, train * validation_size, fit_users),
        ("test", test, read_ratings, test_size, train_users),
    ]  # fmt: skip
    reports = [
        validate_file(
            raw_dir / ITEMS_FILE,
            read_items,
            "recommend_items",
            lambda _: catalogue_expectations("item_id", ITEM_FIELDS),
        ),
        validate_file(
            raw_dir / USERS_FILE,
            read_atomic,
            "recommend_users",
            lambda _: catalogue_expectations("user_id", USER_COLUMNS),
        ),
    ]
    for name, path, read, share, users in ratings:
        reports.append(
            validate_file(
                path,
                read,
                f"recommend_{name}",
                lambda _, s=share, u=users: rating_expectations(params, s, u, items),
            )
        )
    return reports


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the raw MovieLens files.")] = (
        config.RAW_DIR
    ),
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the splits.")] = (
        config.PREPARED_DIR
    ),
    report: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = (
        config.REPORTS_DIR / "validation.json"
    ),
) -> None:
    """Validate the raw files and the splits; exit non-zero listing every failed check."""
    params = config.load()
    reports = validate(
        raw_dir,
        prepared_dir,
        params.validation,
        params.prepare.test_size,
        params.prepare.validation_size,
    )
    write_report(reports, report)


if __name__ == "__main__":
    cli.run(app)
