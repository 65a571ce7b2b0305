"""Stage `recommend-evaluate`: the registered model and the popularity baseline on the test split.

Each user's list leaves out what they rated in training; every test rating counts as relevant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.core import cli, registry, tracking
from projects.recommend import config
from projects.recommend.data import read_ratings
from projects.recommend.metrics import precision_curve, top_k_metrics
from projects.recommend.model import Recommender, interactions, top_k

log = logging.getLogger(__name__)
app = cli.app()

K = 10
CURVE_MAX_K = 20


def load_recommender(model_uri: str) -> Recommender:
    """The `Recommender` inside a registered pyfunc model."""
    return registry.load_pyfunc_model(model_uri).unwrap_python_model().recommender


def evaluate(
    recommender: Recommender, test: pd.DataFrame
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Metrics of the model (and, under `baseline`, of popularity), precision@1..20, long tail.

    Returns:
        The metrics; precision@k per k for both; and, per item in order of training popularity,
        how many users' top-10 lists hold it under each.
    """
    relevant = interactions(test, recommender.user_ids, recommender.item_ids)
    users = np.asarray(relevant.getnnz(axis=1)) > 0
    popularity = np.broadcast_to(recommender.popularity, recommender.scores.shape)
    ranked = {
        "model": recommender.top[:, :CURVE_MAX_K],
        "baseline": top_k(popularity, recommender.seen, CURVE_MAX_K),
    }

    def scores(lists: np.ndarray) -> dict[str, float]:
        return {name: round(v, 6) for name, v in top_k_metrics(lists, relevant, K).items()}

    metrics: dict[str, Any] = {**scores(ranked["model"]), "baseline": scores(ranked["baseline"])}
    curve = pd.DataFrame({"k": np.arange(1, CURVE_MAX_K + 1)})
    by_popularity = np.argsort(-recommender.popularity, kind="stable")
    tail = pd.DataFrame(
        {
            "popularity_rank": np.arange(1, recommender.n_items + 1),
            "item_id": recommender.item_ids[by_popularity],
        }
    )
    for name, lists in ranked.items():
        curve[name] = precision_curve(lists, relevant, CURVE_MAX_K).round(6)
        counts = np.bincount(lists[users, :K].ravel(), minlength=recommender.n_items)
        tail[name] = counts[by_popularity]
    return metrics, curve, tail


def _figures(curve: pd.DataFrame, tail: pd.DataFrame) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    precision, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    for name in ("model", "baseline"):
        ax.plot(curve["k"], curve[name], marker="o", label=name)
    ax.set(xlabel="k", ylabel="precision@k", title="Precision@k, test split")
    ax.legend()
    long_tail, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for name in ("model", "baseline"):
        ax.plot(tail["popularity_rank"], tail[name], label=name, linewidth=1)
    ax.set_xscale("log")  # the head is a few dozen items, the tail over a thousand
    ax.set(
        xlabel="item, by training popularity (rank, log scale)",
        ylabel="top-10 lists holding it",
        title="Long tail: how often each item is recommended",
    )
    ax.legend()
    return {"precision_at_k.png": precision, "long_tail.png": long_tail}


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
    plots_dir: Annotated[Path, typer.Option(help="Where the plot data goes.")] = config.PLOTS_DIR,
) -> None:
    """Evaluate the newly registered model and log the results to its training run."""
    record = registry.read_record(model_record)
    tracking.start(config.NAME)
    recommender = load_recommender(record["model_uri"])
    metrics, curve, tail = evaluate(recommender, read_ratings(test_file))
    tables = {"precision_at_k.csv": curve, "long_tail.csv": tail}
    figures = _figures(curve, tail)
    tracking.record_evaluation(record["run_id"], metrics, metrics_file, plots_dir, tables, figures)
    log.info("test metrics: %s", metrics)


if __name__ == "__main__":
    cli.run(app)
