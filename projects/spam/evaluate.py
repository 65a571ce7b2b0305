"""Stage `spam-evaluate`: score the registered model on the test split; metrics and plots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from sklearn import metrics as skm

from projects.core import cli, registry, tracking
from projects.spam import config
from projects.spam.data import read_messages
from projects.spam.model import POSITIVE, TRUSTED_TYPES, spam_probability

log = logging.getLogger(__name__)
app = cli.app()


def scores(labels: np.ndarray, predicted: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """The spam metrics; `spam_caught` is recall on spam, `blocked_ham` the false-positive rate."""
    is_spam, said_spam = labels == POSITIVE, predicted == POSITIVE
    ham = ~is_spam
    return {
        "accuracy": skm.accuracy_score(is_spam, said_spam),
        "precision": skm.precision_score(is_spam, said_spam, zero_division=0.0),
        "recall": skm.recall_score(is_spam, said_spam, zero_division=0.0),
        "f1": skm.f1_score(is_spam, said_spam, zero_division=0.0),
        "mcc": skm.matthews_corrcoef(is_spam, said_spam),
        "spam_caught": float(said_spam[is_spam].mean()) if is_spam.any() else 0.0,
        "blocked_ham": float(said_spam[ham].mean()) if ham.any() else 0.0,
        "roc_auc": skm.roc_auc_score(is_spam, probability)
        if 0 < is_spam.sum() < len(is_spam)
        else 0.0,
    }


def evaluate(model: Any, test: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Metrics, the confusion rows and the precision-recall curve of `model` on `test`."""
    texts, labels = test[["text"]], test["label"].to_numpy()
    probability = spam_probability(model, texts)
    predicted = model.predict(texts)
    confusion = pd.DataFrame({"actual": labels, "predicted": predicted})
    precision, recall, _ = skm.precision_recall_curve(labels == POSITIVE, probability)
    curve = pd.DataFrame({"recall": recall, "precision": precision}).round(4).drop_duplicates()
    metrics = {k: round(float(v), 6) for k, v in scores(labels, predicted, probability).items()}
    return metrics, confusion, curve


def _figures(confusion: pd.DataFrame, curve: pd.DataFrame) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix, ax = plt.subplots(figsize=(4, 4))
    skm.ConfusionMatrixDisplay.from_predictions(confusion.actual, confusion.predicted, ax=ax)
    ax.set_title("Confusion matrix, test split")
    pr, ax = plt.subplots(figsize=(5, 4))
    ax.plot(curve.recall, curve.precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split")
    return {"confusion_matrix.png": matrix, "precision_recall.png": pr}


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    test_file: Annotated[Path, typer.Option(help="The test split.")] = (
        config.PREPARED_DIR / "test.csv"
    ),
    metrics_file: Annotated[Path, typer.Option(help="Where the metrics go.")] = (
        config.METRICS_FILE
    ),
    plots_dir: Annotated[Path, typer.Option(help="Where the plot data goes.")] = (config.PLOTS_DIR),
) -> None:
    """Evaluate the newly registered model and log the results to its training run."""
    record = registry.read_record(model_record)
    tracking.start(config.NAME)
    model = registry.load_sklearn_model(record["model_uri"], TRUSTED_TYPES)
    metrics, confusion, curve = evaluate(model, read_messages(test_file))
    tables = {"confusion.csv": confusion, "precision_recall.csv": curve}
    figures = _figures(confusion, curve)
    tracking.record_evaluation(record["run_id"], metrics, metrics_file, plots_dir, tables, figures)
    log.info("test metrics: %s", metrics)


if __name__ == "__main__":
    cli.run(app)
