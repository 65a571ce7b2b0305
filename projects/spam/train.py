"""Stage `spam-train`: fit the model, track the run in MLflow, register a new model version."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from projects.core import cli, registry, tracking
from projects.spam import config, model
from projects.spam.data import read_messages

log = logging.getLogger(__name__)
app = cli.app()


@app.command()
def main(
    train_file: Annotated[Path, typer.Option(help="The training split.")] = (
        config.PREPARED_DIR / "train.csv"
    ),
    out: Annotated[Path, typer.Option(help="Where the registered version is recorded.")] = (
        config.MODEL_DIR / "model.json"
    ),
) -> None:
    """Train on the training split and register the model as a new version."""
    import mlflow

    params = config.load()
    messages = read_messages(train_file)
    logged = {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
    with tracking.training_run(config.NAME, logged, messages, train_file) as run:
        fitted = model.train(messages, params.train, seed=params.prepare.seed)
        mlflow.log_param("decision_threshold", fitted.threshold)
        example = messages[["text"]].head(3)
        info = registry.log_sklearn_model(
            fitted, config.MODEL_NAME, example, fitted.predict(example), model.TRUSTED_TYPES
        )
    registry.write_record(out, config.MODEL_NAME, info, run.info.run_id)


if __name__ == "__main__":
    cli.run(app)
