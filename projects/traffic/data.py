"""The traffic project's raw data: a simulated API access log and its labels.

No labelled access log of this kind ships in a package registry, so the default data comes from
the seeded simulator (`projects.traffic.simulator`): `access.log`, in the Combined Log Format with
the request body as a last field (as nginx logs `$request_body`), and `labels.csv`, the kind of
every line's request and of its client.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from projects.core.cli import StageError
from projects.traffic import config
from projects.traffic.simulator import NORMAL_KINDS, write

LOG_FILE = "access.log"
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("line", "client_kind", "request_kind", "is_attack")


def write_raw(out_dir: Path, wheel_cache: Path) -> None:
    """Simulate the log and its labels into `out_dir` (the bootstrap's entry point)."""
    del wheel_cache  # generated, not downloaded
    write(out_dir, **config.load().simulate.model_dump())


def read_labels(path: Path) -> pd.DataFrame:
    """The labels file: a row per log line (`line`, the client's and the request's kinds).

    Raises:
        StageError: the file is missing or unreadable, or lacks a column.
    """
    try:
        labels = pd.read_csv(path, dtype={"client_kind": str, "request_kind": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise StageError(f"{path}: cannot read the labels: {exc}") from None
    missing = [c for c in LABEL_COLUMNS if c not in labels]
    if missing:
        raise StageError(f"{path}: no column {', '.join(missing)}")
    return labels


def normal_clients(frame: pd.DataFrame) -> pd.DataFrame:
    """The requests of normal clients (the kinds of `simulator.NORMAL_KINDS`): what the
    unsupervised models are fitted on."""
    return frame[frame["client_kind"].isin(NORMAL_KINDS)].reset_index(drop=True)
