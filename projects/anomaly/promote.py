"""Stage `anomaly-promote`: the new version becomes `@champion` only if it beats the champion."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from projects.anomaly import config
from projects.anomaly.data import read_sessions
from projects.anomaly.evaluate import evaluate, load_detector
from projects.core import cli, registry, tracking

log = logging.getLogger(__name__)
app = cli.app()


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
    report: Annotated[Path, typer.Option(help="Where the decision is written.")] = (
        config.REPORTS_DIR / "promotion.json"
    ),
) -> None:
    """Compare the new version with the champion on the same test split; move the aliases."""
    metric = config.load().promote.metric
    tracking.start(config.NAME)

    def score_champion(model_uri: str) -> float:
        return evaluate(load_detector(model_uri), read_sessions(test_file))[0][metric]

    registry.promote(config.MODEL_NAME, metric, model_record, metrics_file, report, score_champion)


if __name__ == "__main__":
    cli.run(app)
