"""Stage `recommend-prepare`: per-user random splits into fit, validation and test.

The test split is Microsoft Recommenders' ML-100K protocol: each user's ratings are shuffled with
a seed and the last 25 % held out (`python_stratified_split`). The validation split is carved the
same way from each user's training ratings, to choose hyperparameters without touching test.

Judging the data is the validate stage's job, so a raw file that cannot be read still yields
(empty) splits, and validate reports everything that is wrong in one place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from projects.core import cli
from projects.recommend import config
from projects.recommend.data import RATING_COLUMNS, RATINGS_FILE, read_atomic, write_ratings

log = logging.getLogger(__name__)
app = cli.app()

SPLIT_FILES = ("fit.csv", "validation.csv", "test.csv")


def split_per_user(
    ratings: pd.DataFrame, held_out: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out round(`held_out` x n) of each user's n ratings, chosen at random.

    Every user keeps at least one rating on the kept side, so a held-out user is always known.
    Both parts keep the input's row order.
    """
    if ratings.empty:
        return ratings, ratings
    shuffled = np.random.default_rng(seed).permutation(len(ratings))
    position = pd.Series(shuffled, index=ratings.index)
    # rank each user's ratings by their random position: the first ones are kept
    rank = position.groupby(ratings["user_id"]).rank(method="first") - 1
    count = ratings.groupby("user_id")["user_id"].transform("size")
    kept = rank < np.maximum(np.round(count * (1 - held_out)), 1)
    return ratings[kept], ratings[~kept]


def split(
    ratings: pd.DataFrame, test_size: float, validation_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The fit, validation and test splits; fit and validation together are the training data."""
    train, test = split_per_user(ratings, test_size, seed)
    # a different stream for the second split, derived from the same seed
    fit, validation = split_per_user(train, validation_size, seed + 1)
    return fit, validation, test


def _read_leniently(path: Path) -> pd.DataFrame:
    try:
        ratings = read_atomic(path)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        log.warning(
            "%s cannot be read (%s); writing empty splits for validate to report", path, exc
        )
        return pd.DataFrame(columns=list(RATING_COLUMNS))
    if "user_id" not in ratings:
        log.warning("%s has no user_id column; writing empty splits for validate to report", path)
        return pd.DataFrame(columns=list(RATING_COLUMNS))
    return ratings


@app.command()
def main(
    raw_dir: Annotated[Path, typer.Option(help="Folder of the raw MovieLens files.")] = (
        config.RAW_DIR
    ),
    out_dir: Annotated[Path, typer.Option(help="Where fit, validation and test go.")] = (
        config.PREPARED_DIR
    ),
) -> None:
    """Split the raw ratings per user into fit.csv, validation.csv and test.csv."""
    params = config.load().prepare
    ratings = _read_leniently(raw_dir / RATINGS_FILE)
    parts = split(ratings, params.test_size, params.validation_size, params.seed)
    for name, part in zip(SPLIT_FILES, parts, strict=True):
        write_ratings(part, out_dir / name)
    log.info("split %d ratings into %s", len(ratings), [len(part) for part in parts])


if __name__ == "__main__":
    cli.run(app)
