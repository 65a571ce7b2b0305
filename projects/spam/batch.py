"""Batch scoring of messages (`make batch-score PROJECT=spam`, see `batch.job`).

The input is CSV with a `text` column (the raw data's own format), or plain text with one message
a line. Each message gets the champion's label and spam probability. An empty message is a
rejected row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from batch.inputs import csv_or_lines, read_values
from batch.protocol import REJECTED_COLUMNS, REJECTED_TEXT, Table, rejected
from projects.spam.model import POSITIVE, TRUSTED_TYPES, SpamScorer

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from batch.spark import Model

TABLES = {"messages": Table(key=("file", "text"), positive="is_spam")}
TEXT_COLUMN = "text"
EMPTY = "empty message"
MESSAGE_COLUMNS = ["file", "text", "label", "spam_probability", "is_spam", "model_version"]
MESSAGE_SCHEMA = (
    "file string, text string, label string, spam_probability double, is_spam boolean, "
    "model_version string"
)


def load(folder: Path) -> SpamScorer:
    """The scorer of a downloaded champion (its MLflow model folder)."""
    import skops.io

    return SpamScorer(skops.io.load(folder / "model.skops", trusted=list(TRUSTED_TYPES)))


def verdicts(scorer: Any, files: list[str], texts: list[str], version: str) -> pd.DataFrame:
    """Label and probability of each message."""
    probability = scorer.probability(texts) if texts else []
    spam = scorer.is_spam(probability) if texts else []
    return pd.DataFrame(
        {
            "file": files,
            "text": texts,
            "label": [POSITIVE if s else "ham" for s in spam],
            "spam_probability": probability,
            "is_spam": spam,
            "model_version": version,
        },
        columns=MESSAGE_COLUMNS,
    )


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(file, value) rows -> the messages to score and the rejected ones."""
    text = frame["value"].fillna("")
    empty = text.str.strip() == ""
    bad = [rejected(f, t, EMPTY) for f, t in zip(frame["file"][empty], text[empty], strict=True)]
    return frame[~empty], pd.DataFrame(bad, columns=REJECTED_COLUMNS)


def spark(spark: SparkSession, files: list[str], model: Model) -> dict[str, DataFrame]:
    """The Spark job: every partition's messages scored where they lie (no shuffle)."""
    from pyspark.sql import functions as sf

    from batch.spark import csv_rows, text_lines

    rows = csv_rows(spark, files, TEXT_COLUMN) if csv_or_lines(files) else text_lines(spark, files)
    empty = sf.trim(sf.coalesce(sf.col("value"), sf.lit(""))) == ""

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = model.get()
        for batch in batches:
            yield verdicts(scorer, list(batch["file"]), list(batch["value"]), model.version)

    return {
        "messages": rows.where(~empty).mapInPandas(score_partition, MESSAGE_SCHEMA),
        "rejected": rows.where(empty).select(
            "file",
            sf.substring(sf.coalesce("value", sf.lit("")), 1, REJECTED_TEXT).alias("text"),
            sf.lit(EMPTY).alias("reason"),
        ),
    }


def local(files: list[Path], scorer: Any, version: str) -> dict[str, pd.DataFrame]:
    """The in-process path: every message scored in this process."""
    good, bad = split(read_values(files, TEXT_COLUMN))
    return {
        "messages": verdicts(scorer, list(good["file"]), list(good["value"]), version),
        "rejected": bad,
    }


def example(folder: Path, lines: int) -> None:
    """The first `lines` messages of the raw collection as CSV (the raw format, labels
    included), and an empty message."""
    from projects.spam.config import RAW_DIR
    from projects.spam.data import RAW_FILE, read_messages, write_messages

    messages = read_messages(RAW_DIR / RAW_FILE).head(lines)
    empty = pd.DataFrame({column: [""] for column in messages.columns})
    write_messages(pd.concat([messages, empty], ignore_index=True), folder / "messages.csv")
