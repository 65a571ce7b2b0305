"""The anomaly project's raw data: a log in Loghub's HDFS_v1 format and its labels.

The default data comes from our own simulator (`simulator.py`), seeded by params.yaml, so it is
generated offline and byte-for-byte the same on every machine. A real HDFS_v1 log and its
`anomaly_label.csv` can take its place in `data/raw/anomaly/` (then `make data-record`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from projects.anomaly import config
from projects.anomaly.simulator import simulate

LOG_FILE = "HDFS.log"
LABELS_FILE = "anomaly_label.csv"
LABELS = ("Normal", "Anomaly")
SESSION_COLUMNS = ("BlockId", "Label", "Events")


def read_lines(path: Path) -> list[str]:
    """The log's lines, without line ends; bytes that are not UTF-8 are replaced, not fatal."""
    with path.open(encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def read_labels(path: Path) -> pd.DataFrame:
    """`BlockId`, `Label` as text."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV with a header; byte-for-byte deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")


def read_sessions(path: Path) -> pd.DataFrame:
    """A sessions file: `BlockId`, `Label`, `Events` (space-separated event ids)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def events_of(sessions: pd.DataFrame) -> list[list[str]]:
    """The event-id sequences of a sessions frame."""
    return [text.split() for text in sessions["Events"]]


def labels_of(sessions: pd.DataFrame) -> np.ndarray:
    """True for each anomalous session of a sessions frame."""
    return (sessions["Label"] == "Anomaly").to_numpy()


def write_raw(out_dir: Path, wheel_cache: Path) -> None:
    """Simulate the log and its labels into `out_dir` (the bootstrap's entry point)."""
    del wheel_cache  # generated, not downloaded
    params = config.load().simulate
    lines, labels = simulate(params.blocks, params.anomaly_share, params.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LOG_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_frame(labels[["BlockId", "Label"]], out_dir / LABELS_FILE)
