"""Batch recommendations (`make batch-score PROJECT=recommend`, see `batch.job`).

The input is a list of user ids: plain text with one id a line, or CSV with a `user_id` column.
Each user gets the champion's top `K` items (popular items, flagged `cold_start`, for a user the
model has never seen), as `GET /recommend` answers. An id that is not a whole number is a
rejected row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from batch.inputs import csv_or_lines, read_values
from batch.protocol import REJECTED_COLUMNS, REJECTED_TEXT, Table
from projects.recommend.config import MODEL_ARTIFACT
from projects.recommend.model import Recommender

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from batch.spark import Model

# the share of cold starts is the summary's "rate of positives" here
TABLES = {"users": Table(key=("user_id",), positive="cold_start")}
K = 10  # items per user, the service's default
USER_COLUMN = "user_id"
NOT_AN_ID = "not a user id (a whole number)"
USER_COLUMNS = ["user_id", "cold_start", "items", "titles", "scores", "model_version"]
USER_SCHEMA = (
    "user_id long, cold_start boolean, items array<long>, titles array<string>, "
    "scores array<double>, model_version string"
)
PARSED_COLUMNS = ["user_id", "file", "text", "reason"]
USER_ID = re.compile(r"[+-]?[0-9]{1,18}")


def load(folder: Path) -> Recommender:
    """The recommender of a downloaded champion (its MLflow model folder)."""
    return Recommender.load(folder / "artifacts" / f"{MODEL_ARTIFACT}.npz")


def user_id(text: str | None) -> int | None:
    """The user id a line or field holds, or None if it is not a whole number (of at most 18
    digits: Spark's ids are 64-bit)."""
    text = (text or "").strip()
    return int(text) if USER_ID.fullmatch(text) else None


def parse(frame: pd.DataFrame) -> pd.DataFrame:
    """(file, value) rows -> `PARSED_COLUMNS`: the user id, or the rejected row's reason."""
    ids = [user_id(v) for v in frame["value"]]
    bad = [i is None for i in ids]
    blank = frame["value"].fillna("").str.strip() == ""
    return pd.DataFrame(
        {
            "user_id": pd.array(ids, dtype="Int64"),
            "file": [f if b else None for f, b in zip(frame["file"], bad, strict=True)],
            "text": [
                str(v)[:REJECTED_TEXT] if b else None
                for v, b in zip(frame["value"], bad, strict=True)
            ],
            "reason": [NOT_AN_ID if b else None for b in bad],
        },
        columns=PARSED_COLUMNS,
    )[~blank.to_numpy()]


def recommendations(model: Recommender, users: list[int], version: str) -> pd.DataFrame:
    """Each user's top `K`."""
    lists = [model.recommend(user, K) for user in users]
    return pd.DataFrame(
        {
            "user_id": users,
            "cold_start": [r.cold_start for r in lists],
            "items": [[i.item_id for i in r.items] for r in lists],
            "titles": [[i.title for i in r.items] for r in lists],
            "scores": [[i.score for i in r.items] for r in lists],
            "model_version": version,
        },
        columns=USER_COLUMNS,
    )


def spark(spark: SparkSession, files: list[str], model: Model) -> dict[str, DataFrame]:
    """The Spark job: ids parsed and recommended for partition by partition (no shuffle)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    from batch.spark import csv_rows, text_lines

    rows = csv_rows(spark, files, USER_COLUMN) if csv_or_lines(files) else text_lines(spark, files)
    schema = "user_id long, file string, text string, reason string"
    parsed = rows.mapInPandas(lambda batches: map(parse, batches), schema)
    parsed = parsed.persist(StorageLevel.DISK_ONLY)

    def recommend_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        recommender = model.get()
        for batch in batches:
            yield recommendations(recommender, [int(u) for u in batch["user_id"]], model.version)

    return {
        "users": parsed.where(sf.col("reason").isNull())
        .select("user_id")
        .mapInPandas(recommend_partition, USER_SCHEMA),
        "rejected": parsed.where(sf.col("reason").isNotNull()).select("file", "text", "reason"),
    }


def local(files: list[Path], model: Recommender, version: str) -> dict[str, pd.DataFrame]:
    """The in-process path: every user's list computed in this process."""
    parsed = parse(read_values(files, USER_COLUMN))
    good = parsed["reason"].isna()
    users = [int(u) for u in parsed["user_id"][good]]
    return {
        "users": recommendations(model, users, version),
        "rejected": parsed.loc[~good, REJECTED_COLUMNS].reset_index(drop=True),
    }


def example(folder: Path, lines: int) -> None:
    """`lines` user ids, one a line: known users, unknown ones (cold starts) and a line that
    is no id."""
    folder.mkdir(parents=True, exist_ok=True)
    users = [str(u) for u in range(1, lines - 1)] + ["100000", "not-a-user"]
    (folder / "users.txt").write_text("\n".join(users) + "\n")
