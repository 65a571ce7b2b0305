"""`make evaluate-traces`: train and evaluate both models on Loghub's `Event_traces.csv`.

Loghub's preprocessed HDFS_v1 has one row per block: `BlockId`, `Label` (`Success`/`Fail`),
`Type`, `Features` (the event sequence, e.g. `"[E5,E22,E5,E11,E9,E26]"`), `TimeInterval` and
`Latency`. Event ids are opaque tokens here. The sessions are split as the pipeline splits
them (stratified, seeded); the unsupervised detector is fitted without labels and thresholded on
validation; the supervised model is fitted on the training labels. The last line printed is one
JSON object with both models' test precision, recall and F1.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from projects.anomaly import config
from projects.anomaly.data import labels_of
from projects.anomaly.evaluate import scores
from projects.anomaly.model import (
    SubspaceDetector,
    best_threshold,
    count_vectors,
    supervised_input,
    train_supervised,
)
from projects.anomaly.parsing import UNKNOWN
from projects.anomaly.prepare import split_blocks
from projects.core import cli
from projects.core.cli import StageError

log = logging.getLogger(__name__)
app = cli.app()

LABELS = {"Success": "Normal", "Fail": "Anomaly"}
FEATURES = re.compile(r"^\[\s*([^\[\],\s]+(?:\s*,\s*[^\[\],\s]+)*)?\s*\]$")


def parse_features(text: str) -> list[str]:
    """`"[E5,E22,E5]"` -> `["E5", "E22", "E5"]`.

    Raises:
        ValueError: the text is not a bracketed, comma-separated list.
    """
    found = FEATURES.match(str(text).strip())
    if found is None:
        raise ValueError(f"not a bracketed list of event ids: {str(text)[:60]!r}")
    return [token.strip() for token in (found.group(1) or "").split(",") if token.strip()]


def read_traces(path: Path) -> pd.DataFrame:
    """`BlockId`, `Label` ("Normal"/"Anomaly") and `events` (lists) from an Event_traces file.

    Raises:
        StageError: naming the file and the line of the first problem found.
    """
    try:
        with warnings.catch_warnings():
            # a row with more fields than the header (an unquoted list) is an error, not a loss
            warnings.simplefilter("error", pd.errors.ParserWarning)
            traces = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserWarning:
        raise StageError(f"{path}: a row has more fields than the header; quote Features") from None
    except FileNotFoundError:
        raise StageError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StageError(f"{path}: not a CSV file: {exc}") from None
    missing = {"BlockId", "Label", "Features"} - set(traces.columns)
    if missing:
        raise StageError(f"{path}: missing column(s) {sorted(missing)}")
    if traces.empty:
        raise StageError(f"{path}: no sessions")
    events = []
    for row, (label, features) in enumerate(zip(traces["Label"], traces["Features"], strict=True)):
        line = row + 2  # the header is line 1
        if label not in LABELS:
            raise StageError(f"{path}, line {line}: Label must be Success or Fail, got {label!r}")
        try:
            events.append(parse_features(features))
        except ValueError as exc:
            raise StageError(f"{path}, line {line}: Features: {exc}") from None
    return pd.DataFrame(
        {"BlockId": traces["BlockId"], "Label": traces["Label"].map(LABELS), "events": events}
    )


def evaluate_traces(traces: pd.DataFrame, params: config.AnomalyParams) -> dict[str, Any]:
    """Both models' test scores on traces, split and fitted as the pipeline does."""
    parts = split_blocks(
        traces[["BlockId", "Label"]].drop_duplicates("BlockId"),
        params.prepare.validation_size,
        params.prepare.test_size,
        params.prepare.seed,
    )
    by_block = traces.drop_duplicates("BlockId").set_index("BlockId")
    split = {name: by_block.loc[blocks] for name, blocks in parts.items()}
    vocabulary = [UNKNOWN, *sorted({e for events in split["train"]["events"] for e in events})]
    counts = {
        name: count_vectors(list(frame["events"]), vocabulary) for name, frame in split.items()
    }
    labels = {name: labels_of(frame) for name, frame in split.items()}
    detector = SubspaceDetector(params.train.weighting, params.train.variance).fit(counts["train"])
    threshold = best_threshold(detector.score_samples(counts["validation"]), labels["validation"])
    flagged = detector.score_samples(counts["test"]) >= threshold
    supervised = train_supervised(list(split["train"]["events"]), labels["train"])
    predicted = supervised.predict(supervised_input(list(split["test"]["events"])))
    return {
        "unsupervised": scores(labels["test"], flagged),
        "supervised": scores(labels["test"], predicted),
        "sessions": len(by_block),
    }


def to_traces(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions (`BlockId`, `Label`, `Events`) in the Event_traces format, e.g. for a test."""
    inverse = {value: key for key, value in LABELS.items()}
    return pd.DataFrame(
        {
            "BlockId": sessions["BlockId"],
            "Label": sessions["Label"].map(inverse),
            "Type": "",
            "Features": ["[" + ",".join(text.split()) + "]" for text in sessions["Events"]],
            "TimeInterval": "[]",
            "Latency": 0,
        }
    )


@app.command()
def main(
    traces: Annotated[Path, typer.Option(help="Loghub's Event_traces.csv (HDFS_v1).")],
) -> None:
    """Print the unsupervised and supervised models' test scores as one JSON line."""
    params = config.load()
    sessions = read_traces(traces)
    log.info("%d sessions, %d anomalous", len(sessions), int((sessions.Label == "Anomaly").sum()))
    print(json.dumps(evaluate_traces(sessions, params)))


if __name__ == "__main__":
    cli.run(app)
