"""Stage `anomaly-train`: fit the unsupervised detector, pick its threshold, register it.

The subspace detector is fitted on the training sessions without their labels. The labelled
validation split is used for one thing: the decision threshold with the best F1. The supervised
model, fitted on the training labels, is logged to the same run for comparison.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from projects.anomaly import config
from projects.anomaly.data import events_of, labels_of, read_sessions
from projects.anomaly.model import (
    Detector,
    SubspaceDetector,
    best_threshold,
    count_vectors,
    supervised_input,
    train_supervised,
    vocabulary_of,
)
from projects.anomaly.parsing import Templates
from projects.anomaly.prepare import TEMPLATES_FILE
from projects.core import cli, registry, tracking

log = logging.getLogger(__name__)
app = cli.app()

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# What the logged model needs to be loaded elsewhere; its code also imports this repository's
# `projects.anomaly.model`, so the package must be installed there too.
PACKAGES = ("mlflow", "numpy", "scikit-learn", "pandas")


def train(
    train_sessions: pd.DataFrame,
    validation: pd.DataFrame,
    templates: Templates,
    params: config.TrainParams,
) -> tuple[Detector, object]:
    """The unsupervised detector (threshold from validation) and the supervised model."""
    vocabulary = vocabulary_of(templates)
    events = events_of(train_sessions)
    counts = count_vectors(events, vocabulary)
    subspace = SubspaceDetector(params.weighting, params.variance).fit(counts)
    validation_scores = subspace.score_samples(count_vectors(events_of(validation), vocabulary))
    threshold = best_threshold(validation_scores, labels_of(validation))
    supervised = train_supervised(events, labels_of(train_sessions))
    return Detector(templates, vocabulary, subspace, threshold), supervised


def _log_detector(detector: Detector, example: pd.DataFrame) -> object:
    """Register the detector as a pyfunc logged from code, its arrays as the artifact."""
    from projects.anomaly.pyfunc_model import DetectorModel

    wrapper = DetectorModel()
    wrapper.detector = detector
    output = wrapper.predict(None, example)
    return registry.log_pyfunc_model(
        PYFUNC_CODE, detector, config.MODEL_ARTIFACT, config.MODEL_NAME, example, output, PACKAGES
    )


@app.command()
def main(
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the sessions and templates.")] = (
        config.PREPARED_DIR
    ),
    out: Annotated[Path, typer.Option(help="Where the registered version is recorded.")] = (
        config.MODEL_DIR / "model.json"
    ),
) -> None:
    """Fit on the training sessions, threshold on validation, register the detector."""
    import mlflow

    params = config.load()
    train_sessions = read_sessions(prepared_dir / "train.csv")
    validation = read_sessions(prepared_dir / "validation.csv")
    templates = Templates.from_json((prepared_dir / TEMPLATES_FILE).read_text())
    logged = {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
    with tracking.training_run(config.NAME, logged, train_sessions, prepared_dir) as run:
        detector, supervised = train(train_sessions, validation, templates, params.train)
        mlflow.log_params({"threshold": detector.threshold, "templates": len(templates.templates),
                           "components": len(detector.subspace.components_)})  # fmt: skip
        mlflow.log_text(templates.to_json(), "templates.json")
        sample = supervised_input(events_of(train_sessions.head(3)))
        registry.log_sklearn_model(
            supervised, None, sample, supervised.predict(sample), name=config.SUPERVISED_ARTIFACT
        )
        example = pd.DataFrame(
            {
                "block_id": train_sessions["BlockId"].head(3),
                "events": train_sessions["Events"].head(3),
            }
        )
        info = _log_detector(detector, example)
    registry.write_record(out, config.MODEL_NAME, info, run.info.run_id)


if __name__ == "__main__":
    cli.run(app)
