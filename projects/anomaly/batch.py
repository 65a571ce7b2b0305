"""Batch scoring of raw HDFS logs (`make batch-score PROJECT=anomaly`, see `batch.job`).

Lines are parsed with the champion's own templates, grouped into sessions by block across every
input file (a block's lines may be spread over files and hours: the grouping is a shuffle, not a
per-file pass), and each session gets its score, the threshold, the verdict and the events that
contributed most to its score. A line that is not in the HDFS_v1 format, or names no block, is a
rejected row with its reason. The score depends on the event counts only, so the order in which
a session's lines arrive does not change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from batch.inputs import dealt, read_lines
from batch.protocol import REJECTED_COLUMNS, Table, rejected
from projects.anomaly.config import MODEL_ARTIFACT
from projects.anomaly.model import Detector, count_vectors
from projects.anomaly.parsing import Templates, blocks_in, content_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from batch.spark import Model

TABLES = {"sessions": Table(key=("block_id",), positive="is_anomaly")}
TOP = 5  # events named per session, as the service's explanation names them
NOT_HDFS = "not an HDFS_v1 log line"
NO_BLOCK = "names no block (belongs to no session)"
SESSION_COLUMNS = [
    "block_id", "score", "threshold", "is_anomaly", "unknown_events", "events",
    "top_events", "top_shares", "model_version",
]  # fmt: skip
SESSION_SCHEMA = (
    "block_id string, score double, threshold double, is_anomaly boolean, unknown_events long, "
    "events long, top_events array<string>, top_shares array<double>, model_version string"
)
PARSED_SCHEMA = "block_id string, event string, file string, text string, reason string"
PARSED_COLUMNS = ["block_id", "event", "file", "text", "reason"]


def load(folder: Path) -> Detector:
    """The detector in a downloaded champion (its MLflow model folder)."""
    return Detector.load(folder / "artifacts" / f"{MODEL_ARTIFACT}.npz")


def parse(
    rows: Iterable[tuple[str, str]], templates: Templates
) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """(file, line) rows -> (block, event) pairs and the rejected lines with their reasons.

    A line naming several blocks gives each of them the event, as `parsing.sessions` does.
    """
    pairs: list[tuple[str, str]] = []
    bad: list[dict[str, str]] = []
    for file, line in rows:
        if not line.strip():
            continue  # a blank line is not a log line
        content = content_of(line)
        if content is None:
            bad.append(rejected(file, line, NOT_HDFS))
            continue
        blocks = blocks_in(content)
        if not blocks:
            bad.append(rejected(file, line, NO_BLOCK))
            continue
        event = templates.match(content)
        pairs.extend((block, event) for block in blocks)
    return pairs, bad


def verdicts(
    detector: Detector, block_ids: Sequence[str], events: Sequence[Sequence[str]], version: str
) -> pd.DataFrame:
    """Each session's verdict and its `TOP` events by share of the score (`Detector.explain`,
    for many sessions at once)."""
    scored = detector.score_sessions(block_ids, events)
    squared = detector.subspace.residuals(count_vectors(events, detector.vocabulary)) ** 2
    total = squared.sum(axis=1)
    order = np.argsort(-squared, axis=1, kind="stable")[:, :TOP]
    shares = np.round(
        np.take_along_axis(squared, order, axis=1) / np.where(total > 0, total, 1)[:, None], 6
    )
    vocabulary = np.array(detector.vocabulary)
    return pd.DataFrame(
        {
            "block_id": [s.block_id for s in scored],
            "score": [s.score for s in scored],
            "threshold": detector.threshold,
            "is_anomaly": [s.is_anomaly for s in scored],
            "unknown_events": [s.unknown_events for s in scored],
            "events": [len(e) for e in events],
            "top_events": [
                list(vocabulary[o]) if t > 0 else [] for o, t in zip(order, total, strict=True)
            ],
            "top_shares": [list(s) if t > 0 else [] for s, t in zip(shares, total, strict=True)],
            "model_version": version,
        },
        columns=SESSION_COLUMNS,
    )


def spark(spark: SparkSession, files: list[str], model: Model) -> dict[str, DataFrame]:
    """The Spark job: parse every partition, group by block (a shuffle), score each group."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    from batch.spark import text_lines

    def parse_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        templates = model.get().templates
        for batch in batches:
            pairs, bad = parse(zip(batch["file"], batch["value"], strict=True), templates)
            # absent values as None, not NaN: pyarrow makes no strings of a float column
            frame = pd.DataFrame(pairs, columns=["block_id", "event"], dtype=object)
            yield frame.assign(file=None, text=None, reason=None)
            if bad:
                yield pd.DataFrame(bad).assign(block_id=None, event=None)[PARSED_COLUMNS]

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        detector = model.get()
        for batch in batches:
            events = [list(e) for e in batch["events"]]
            yield verdicts(detector, list(batch["block_id"]), events, model.version)

    # parsed once, read twice (sessions and rejected lines): kept on disk, not in memory
    parsed = text_lines(spark, files).mapInPandas(parse_partition, PARSED_SCHEMA)
    parsed = parsed.persist(StorageLevel.DISK_ONLY)
    sessions = (
        parsed.where(sf.col("reason").isNull())
        .groupBy("block_id")
        .agg(sf.collect_list("event").alias("events"))
        .mapInPandas(score_partition, SESSION_SCHEMA)
    )
    rejected = parsed.where(sf.col("reason").isNotNull()).select("file", "text", "reason")
    return {"sessions": sessions, "rejected": rejected}


def local(files: list[Path], detector: Detector, version: str) -> dict[str, pd.DataFrame]:
    """The in-process path: every file's lines parsed, grouped and scored in this process."""
    grouped: dict[str, list[str]] = {}
    bad_lines: list[dict[str, str]] = []
    for path in files:
        pairs, bad = parse(((str(path), line) for line in read_lines(path)), detector.templates)
        for block, event in pairs:
            grouped.setdefault(block, []).append(event)
        bad_lines += bad
    sessions = verdicts(detector, list(grouped), list(grouped.values()), version)
    return {
        "sessions": sessions,
        "rejected": pd.DataFrame(bad_lines, columns=REJECTED_COLUMNS),
    }


def example(folder: Path, lines: int) -> None:
    """The first `lines` lines of the raw log, dealt round-robin into three files (so that
    every block's lines are spread over files), and two lines of another format."""
    from projects.anomaly.config import RAW_DIR
    from projects.anomaly.data import LOG_FILE

    folder.mkdir(parents=True, exist_ok=True)
    parts = dealt(RAW_DIR / LOG_FILE, lines)
    parts[1] += ["this is not an HDFS log line", "GET /index.html HTTP/1.1"]
    for i, part in enumerate(parts):
        (folder / f"hdfs-{i}.log").write_text("\n".join(part) + "\n")
