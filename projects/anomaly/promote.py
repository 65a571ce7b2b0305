"""Stage `anomaly-promote`: the new version becomes `@champion` only if it beats the champion."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from projects.anomaly import config
from projects.anomaly.data import LOG_FILE, read_lines, read_sessions
from projects.anomaly.evaluate import evaluate, load_detector
from projects.anomaly.model import Detector
from projects.anomaly.parsing import format_events, sessions
from projects.core import cli, registry, tracking

log = logging.getLogger(__name__)
app = cli.app()


def as_parsed_by(detector: Detector, test: pd.DataFrame, lines: list[str]) -> pd.DataFrame:
    """The test sessions with their events as `detector`'s own templates parse the raw lines.

    New raw data is mined again, and the same template may get another event id, so the event
    ids in test.csv are the new model's, not necessarily the champion's.
    """
    grouped, _ = sessions(lines, detector.templates)
    return test.assign(Events=[format_events(grouped.get(b, [])) for b in test["BlockId"]])


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    metrics_file: Annotated[Path, typer.Option(help="The new model's test metrics.")] = (
        config.METRICS_FILE
    ),
    test_file: Annotated[Path, typer.Option(help="The test split, to score the champion.")] = (
        config.PREPARED_DIR / "test.csv"
    ),
    log_file: Annotated[
        Path, typer.Option(help="The raw log, parsed as the champion parses it.")
    ] = (config.RAW_DIR / LOG_FILE),
    report: Annotated[Path, typer.Option(help="Where the decision is written.")] = (
        config.REPORTS_DIR / "promotion.json"
    ),
) -> None:
    """Compare the new version with the champion on the same test split; move the aliases."""
    metric = config.load().promote.metric
    tracking.start(config.NAME)

    def score_champion(model_uri: str) -> float:
        champion = load_detector(model_uri)
        test = as_parsed_by(champion, read_sessions(test_file), read_lines(log_file))
        return evaluate(champion, test)[0][metric]

    registry.promote(config.MODEL_NAME, metric, model_record, metrics_file, report, score_champion)


if __name__ == "__main__":
    cli.run(app)
