"""Stage `recommend-train`: choose hyperparameters on validation, refit on train, register.

The grids in params.yaml are searched on the fit/validation splits only; the best point by the
selection metric is refit on fit + validation (all of train). The popularity baseline is scored
on the same validation split, for comparison; it is part of every model as the cold-start list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from projects.core import cli, registry, tracking
from projects.recommend import config, model
from projects.recommend.config import TrainParams
from projects.recommend.data import ITEMS_FILE, read_items, read_ratings
from projects.recommend.metrics import METRICS, top_k_metrics

log = logging.getLogger(__name__)
app = cli.app()

K = 10
METRIC_COLUMNS = [f"{name}_at_{K}" for name in (*METRICS, "coverage")]
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# What the logged model needs to be loaded elsewhere; its code also imports this repository's
# `projects.recommend.model`, so the package must be installed there too.
PACKAGES = ("mlflow", "numpy", "scipy", "pandas")


def search(
    fit: pd.DataFrame, validation: pd.DataFrame, items: pd.DataFrame, grid: TrainParams
) -> pd.DataFrame:
    """Score every candidate of the grid, fit on `fit`, on `validation`; one row per candidate.

    The row `baseline` is the popularity ranking, for comparison.
    """
    user_ids, item_ids = np.sort(fit["user_id"].unique()), items["item_id"].to_numpy()
    history = model.interactions(fit, user_ids, item_ids)
    held_out = model.interactions(validation, user_ids, item_ids)
    graph = model.GraphFilter(history, max(grid.filter_rank))
    eases = {l2: model.ease(history, l2) for l2 in grid.l2}
    rows = []
    for hp in model.candidates(grid.l2, grid.filter_rank, grid.filter_weight, grid.blend):
        weights = model.blend(
            history, eases[hp.l2], graph.matrix(hp.filter_rank, hp.filter_weight), hp.blend
        )
        ranked = model.top_k(history @ weights, history, K)
        rows.append({"candidate": "model", **vars(hp), **top_k_metrics(ranked, held_out, K)})
    popularity = np.asarray(history.sum(axis=0))
    ranked = model.top_k(np.repeat(popularity, len(user_ids), axis=0), history, K)
    rows.append({"candidate": "baseline", **top_k_metrics(ranked, held_out, K)})
    return pd.DataFrame(rows)


def best(results: pd.DataFrame, metric: str) -> tuple[model.Hyperparameters, dict[str, float]]:
    """The candidate with the highest `metric` (the first in grid order on a tie); its scores."""
    candidates = results[results["candidate"] == "model"]
    row = candidates.loc[candidates[metric].idxmax()]
    chosen = model.Hyperparameters(
        l2=float(row["l2"]),
        filter_rank=int(row["filter_rank"]),
        filter_weight=float(row["filter_weight"]),
        blend=float(row["blend"]),
    )
    return chosen, {name: float(row[name]) for name in METRIC_COLUMNS}


def baseline(results: pd.DataFrame) -> dict[str, float]:
    """The popularity baseline's scores in a search's results."""
    row = results[results["candidate"] == "baseline"].iloc[0]
    return {name: float(row[name]) for name in METRIC_COLUMNS}


def _log_model(fitted: model.Recommender) -> object:
    """Register the model as a pyfunc logged from code, its arrays as the artifact."""
    from projects.recommend.pyfunc_model import RecommenderModel

    wrapper = RecommenderModel()
    wrapper.recommender = fitted
    # one known user and one the model has never seen (cold start)
    example = pd.DataFrame({"user_id": [int(fitted.user_ids[0]), 0], "k": [3, 3]})
    output = wrapper.predict(None, example)
    return registry.log_pyfunc_model(
        PYFUNC_CODE, fitted, config.MODEL_ARTIFACT, config.MODEL_NAME, example, output, PACKAGES
    )


@app.command()
def main(
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the splits.")] = (
        config.PREPARED_DIR
    ),
    items_file: Annotated[Path, typer.Option(help="The item metadata.")] = (
        config.RAW_DIR / ITEMS_FILE
    ),
    out: Annotated[Path, typer.Option(help="Where the registered version is recorded.")] = (
        config.MODEL_DIR / "model.json"
    ),
) -> None:
    """Search the grid on validation, refit the best on all of train, register the model."""
    import mlflow

    params = config.load()
    fit, validation = (read_ratings(prepared_dir / name) for name in ("fit.csv", "validation.csv"))
    items = read_items(items_file)
    train = pd.concat([fit, validation], ignore_index=True)
    logged = {"prepare": params.prepare.model_dump(), "train": params.train.model_dump()}
    with tracking.training_run(config.NAME, logged, train, prepared_dir) as run:
        results = search(fit, validation, items, params.train)
        chosen, scores = best(results, params.train.selection_metric)
        log.info("searched %d candidates on validation; chose %s", len(results) - 1, chosen)
        mlflow.log_params({f"chosen.{key}": value for key, value in vars(chosen).items()})
        mlflow.log_text(results.to_csv(index=False), "tuning/validation_search.csv")
        mlflow.log_metrics({f"validation_{name}": value for name, value in scores.items()})
        mlflow.log_metrics(
            {f"validation_baseline_{name}": value for name, value in baseline(results).items()}
        )
        info = _log_model(model.fit(train, items, chosen))
    registry.write_record(out, config.MODEL_NAME, info, run.info.run_id)


if __name__ == "__main__":
    cli.run(app)
