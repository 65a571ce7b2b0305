"""Stage `anomaly-reference`: the champion's training sessions as monitoring sees them.

A session becomes its event counts (the model's own features, for the events whose counts vary
in training), its length and its share of unknown events, next to the champion's score (as
log10, as the evaluate stage plots it) and verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.anomaly import config
from projects.anomaly.data import LABELS, events_of, read_sessions
from projects.anomaly.model import Detector, count_vectors
from projects.core import cli, paths, reference
from projects.core.reference import TARGET, Schema

app = cli.app()

NORMAL, ANOMALY = LABELS
# as the evaluate stage's score plot: a score of 0 stays finite
SCORE_FLOOR = 1e-6


def schema(context: dict[str, Any]) -> Schema:
    """The columns, which include one per event that varies in the reference."""
    return Schema(
        numerical=("n_events", "unknown_rate", *context["events"]),
        categorical=(),
        prediction="log_score",
        prediction_label="label",
        record_fields=("prediction_id", "events", "score", "is_anomaly"),
        routes=("score", "score_lines"),
        positive=ANOMALY,
    )


def session_features(
    events: list[list[str]], vocabulary: list[str], columns: list[str]
) -> pd.DataFrame:
    """Length, unknown-event share and the counts of `columns` of each session."""
    counts = count_vectors(events, vocabulary)
    lengths = counts.sum(axis=1)
    frame = pd.DataFrame(
        {
            "n_events": lengths,
            # vocabulary[0] is the unknown event
            "unknown_rate": np.divide(
                counts[:, 0], lengths, out=np.zeros(len(events)), where=lengths > 0
            ),
        }
    )
    index = {event: i for i, event in enumerate(vocabulary)}
    for column in columns:
        frame[column] = counts[:, index[column]]
    return frame


def verdicts(scores: np.ndarray, is_anomaly: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "log_score": np.log10(np.asarray(scores, dtype=float) + SCORE_FLOOR),
            "label": np.where(is_anomaly, ANOMALY, NORMAL),
        }
    )


def build(sessions: pd.DataFrame, detector: Detector) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference frame (features, predictions, true label) and its context."""
    events = events_of(sessions)
    counts = count_vectors(events, detector.vocabulary)
    # a column that never varies in training has no spread to measure drift against
    varying = [e for i, e in enumerate(detector.vocabulary) if i and counts[:, i].std() > 0]
    context = {"vocabulary": detector.vocabulary, "events": varying}
    scores = detector.scores(events)
    frame = pd.concat(
        [
            session_features(events, detector.vocabulary, varying),
            verdicts(scores, scores >= detector.threshold),
        ],
        axis=1,
    )
    frame[TARGET] = sessions["Label"].to_numpy()
    return frame, context


def window_frame(records: pd.DataFrame, context: dict[str, Any]) -> pd.DataFrame:
    """Request-log records of both routes as reference columns (plus `prediction_id`)."""
    events = [str(e).split() for e in records["events"]]
    frame = session_features(events, context["vocabulary"], context["events"])
    scores = pd.to_numeric(records["score"], errors="coerce").to_numpy()
    frame = pd.concat([frame, verdicts(scores, records["is_anomaly"].astype(bool))], axis=1)
    frame["prediction_id"] = records["prediction_id"].to_numpy()
    return frame


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    train_file: Annotated[Path, typer.Option(help="The training sessions.")] = (
        config.PREPARED_DIR / "train.csv"
    ),
    out_dir: Annotated[Path, typer.Option(help="Where the reference goes.")] = (
        paths.REFERENCE_DIR / config.NAME
    ),
) -> None:
    """Write the champion's reference, unless the champion and its reference are unchanged."""
    from projects.anomaly.evaluate import load_detector

    def from_champion(model_uri: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        return build(read_sessions(train_file), load_detector(model_uri))

    reference.run_stage(
        config.NAME, config.MODEL_NAME, model_record, out_dir, __file__, from_champion
    )


if __name__ == "__main__":
    cli.run(app)
