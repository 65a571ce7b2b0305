"""What a project's `batch` module declares, and the rejected-input table every project writes.

A project's `projects/<name>/batch.py` provides:

- `TABLES`: output table -> `Table` (its key and the column the summary counts as positive);
- `load(folder)`: the project's scorer from the champion's downloaded MLflow model folder;
- `spark(spark, files, model)`: the Spark job, `{table: DataFrame}` for every table in `TABLES`
  and `"rejected"` (`REJECTED_COLUMNS`); `model` is a `batch.spark.Model`, whose `get()` gives
  the scorer on the executors;
- `local(files, scorer, version)`: the in-process path, the same tables as pandas frames;
- `example(folder, lines)`: a small input written from the project's raw data (tests, docs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """One output table: the columns that identify a row, and its boolean column that counts as
    positive in the summary (None: the table has none)."""

    key: tuple[str, ...]
    positive: str | None = None


REJECTED_COLUMNS = ["file", "text", "reason"]  # the rejected-input table, in every project
REJECTED_TEXT = 200  # characters of a rejected line that are kept


def rejected(file: str, text: str, reason: str) -> dict[str, str]:
    """One row of the rejected-input table (`REJECTED_COLUMNS`)."""
    return {"file": file, "text": text[:REJECTED_TEXT], "reason": reason}
