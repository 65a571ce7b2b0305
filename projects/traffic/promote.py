"""Stage `traffic-promote`: the new version becomes `@champion` only if it beats the champion."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from projects.core import cli, registry, tracking
from projects.traffic import config
from projects.traffic.evaluate import evaluate
from projects.traffic.train import read_split

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
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the test split.")] = (
        config.PREPARED_DIR
    ),
    report: Annotated[Path, typer.Option(help="Where the decision is written.")] = (
        config.REPORTS_DIR / "promotion.json"
    ),
) -> None:
    """Compare the new version with the champion on the same test split; move the aliases."""
    metric = config.load().promote.metric
    tracking.start(config.NAME)

    def score_champion(model_uri: str) -> float:
        champion = registry.load_pyfunc_model(model_uri).unwrap_python_model().analyzer
        # the champion's own levels only: the supervised variants are not what is promoted
        metrics, _ = evaluate(champion, None, None, read_split(prepared_dir / "test.parquet"))
        return metrics[metric]

    registry.promote(config.MODEL_NAME, metric, model_record, metrics_file, report, score_champion)


if __name__ == "__main__":
    cli.run(app)
