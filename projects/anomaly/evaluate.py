"""Stage `anomaly-evaluate`: the registered detector and the supervised model on the test split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from sklearn import metrics as skm

from projects.anomaly import config
from projects.anomaly.data import events_of, labels_of, read_sessions
from projects.anomaly.model import Detector, supervised_input
from projects.core import cli, registry, tracking

log = logging.getLogger(__name__)
app = cli.app()

BINS = 40


def load_detector(model_uri: str) -> Detector:
    """The `Detector` inside a registered pyfunc model."""
    return registry.load_pyfunc_model(model_uri).unwrap_python_model().detector


def scores(is_anomaly: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of flagging anomalies."""
    return {
        "precision": round(float(skm.precision_score(is_anomaly, flagged, zero_division=0.0)), 6),
        "recall": round(float(skm.recall_score(is_anomaly, flagged, zero_division=0.0)), 6),
        "f1": round(float(skm.f1_score(is_anomaly, flagged, zero_division=0.0)), 6),
    }


def evaluate(
    detector: Detector, test: pd.DataFrame, supervised: Any | None = None
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Metrics (and, under `supervised`, the supervised model's), score histogram, PR curve."""
    is_anomaly = labels_of(test)
    events = events_of(test)
    session_scores = detector.scores(events)
    metrics: dict[str, Any] = scores(is_anomaly, session_scores >= detector.threshold)
    if supervised is not None:
        metrics["supervised"] = scores(is_anomaly, supervised.predict(supervised_input(events)))
    logged = np.log10(session_scores + 1e-6)
    edges = np.linspace(logged.min(), logged.max() + 1e-9, BINS + 1)
    histogram = pd.DataFrame(
        {
            "log10_score": edges[:-1].round(4),
            "normal": np.histogram(logged[~is_anomaly], edges)[0],
            "anomaly": np.histogram(logged[is_anomaly], edges)[0],
        }
    )
    precision, recall, _ = skm.precision_recall_curve(is_anomaly, session_scores)
    curve = pd.DataFrame({"recall": recall, "precision": precision}).round(4).drop_duplicates()
    return metrics, histogram, curve


def _figures(histogram: pd.DataFrame, curve: pd.DataFrame, threshold: float) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spread, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    width = float(np.diff(histogram["log10_score"]).mean()) if len(histogram) > 1 else 1.0
    for name in ("normal", "anomaly"):
        ax.bar(histogram["log10_score"], histogram[name], width=width, align="edge", alpha=0.6,
               label=name)  # fmt: skip
    ax.axvline(np.log10(threshold + 1e-6), color="black", linestyle="--", label="threshold")
    ax.set(xlabel="log10 anomaly score", ylabel="sessions", title="Scores, test split")
    ax.set_yscale("log")
    ax.legend()
    pr, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.plot(curve["recall"], curve["precision"])
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split")
    return {"score_distribution.png": spread, "precision_recall.png": pr}


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    test_file: Annotated[Path, typer.Option(help="The test sessions.")] = (
        config.PREPARED_DIR / "test.csv"
    ),
    metrics_file: Annotated[Path, typer.Option(help="Where the metrics go.")] = (
        config.METRICS_FILE
    ),
    plots_dir: Annotated[Path, typer.Option(help="Where the plot data goes.")] = config.PLOTS_DIR,
) -> None:
    """Evaluate the new detector and the supervised model; log both to the training run."""
    record = registry.read_record(model_record)
    tracking.start(config.NAME)
    detector = load_detector(record["model_uri"])
    supervised = registry.load_sklearn_model(
        f"runs:/{record['run_id']}/{config.SUPERVISED_ARTIFACT}"
    )
    metrics, histogram, curve = evaluate(detector, read_sessions(test_file), supervised)
    tables = {"score_distribution.csv": histogram, "precision_recall.csv": curve}
    figures = _figures(histogram, curve, detector.threshold)
    tracking.record_evaluation(record["run_id"], metrics, metrics_file, plots_dir, tables, figures)
    log.info("test metrics: %s", metrics)


if __name__ == "__main__":
    cli.run(app)
