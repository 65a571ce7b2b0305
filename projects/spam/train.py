"""Stage `spam-train`: fit the model, track the run in MLflow, register a new model version."""

from __future__ import annotations

import json
import logging
import os
import warnings
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
    tracking.start(config.NAME)
    # an experiment's runs carry DVC's experiment name; MLflow names the others
    with mlflow.start_run(run_name=os.environ.get("DVC_EXP_NAME")) as run:
        mlflow.set_tags({**tracking.lineage(), "project": config.NAME, "stage": "train"})
        logged = {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
        mlflow.log_params(tracking.flatten(logged))
        with warnings.catch_warnings():
            # MLflow registers its local source class twice and warns that the path is ambiguous
            warnings.filterwarnings("ignore", message="The specified dataset source")
            dataset = mlflow.data.from_pandas(messages, source=str(train_file), name="spam-train")
        mlflow.log_input(dataset, context="training")
        fitted = model.train(messages, params.train, seed=params.prepare.seed)
        mlflow.log_param("decision_threshold", fitted.threshold)
        example = messages[["text"]].head(3)
        info = registry.log_sklearn_model(
            fitted, config.MODEL_NAME, example, fitted.predict(example), model.TRUSTED_TYPES
        )
    record = {
        "model_name": config.MODEL_NAME,
        "version": str(info.registered_model_version),
        "model_uri": f"models:/{config.MODEL_NAME}/{info.registered_model_version}",
        "run_id": run.info.run_id,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    log.info("registered %s v%s (run %s)", config.MODEL_NAME, record["version"], record["run_id"])


if __name__ == "__main__":
    cli.run(app)
