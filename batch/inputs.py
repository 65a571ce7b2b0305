"""Input formats the batch paths read in process (Spark's readers are in `batch.spark`)."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from projects.core.cli import StageError


def csv_or_lines(files: list[str]) -> bool:
    """Whether `files` are CSV (every name ends in .csv) rather than one item a line.

    Raises:
        StageError: some are CSV and some are not.
    """
    csv = [f.lower().endswith(".csv") for f in files]
    if any(csv) and not all(csv):
        raise StageError("INPUT mixes .csv files with other files: give one kind")
    return all(csv)


def read_lines(path: Path) -> Iterator[str]:
    """A file's lines, gzip or plain, as Spark reads them (undecodable bytes replaced)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for line in f:
            yield line.rstrip("\r\n")


def read_values(files: list[Path], column: str) -> pd.DataFrame:
    """(file, value) rows: CSV files' `column` (with a header, read as text), or plain files'
    lines; what `batch.spark.csv_rows` and `text_lines` give Spark.

    Raises:
        StageError: a CSV file has no such column.
    """
    csv = csv_or_lines([str(f) for f in files])
    frames = []
    for path in files:
        if csv:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
            if column not in table:
                raise StageError(f"INPUT {path}: the CSV has no `{column}` column")
            values = list(table[column])
        else:
            values = list(read_lines(path))
        frames.append(pd.DataFrame({"file": str(path), "value": values}))
    return pd.concat(frames, ignore_index=True)


def dealt(path: Path, lines: int, parts: int = 3) -> list[list[str]]:
    """The first `lines` lines of a file dealt round-robin into `parts` lists: an example input
    whose sessions (a block's, a client's lines) are spread over several files."""
    head = list(itertools.islice(read_lines(path), lines))
    return [head[i::parts] for i in range(parts)]
