"""Recommender quality over 3 split seeds, beside Microsoft Recommenders' ML-100K table; speed.

Run: `make bench BENCH=recommend` (or `python -m projects.recommend.bench`). Each seed makes the
pipeline's own per-user 75/25 split and validation carve, searches the grid of params.yaml on
validation only, refits the best point on all of train and scores it once on that seed's test
split."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from projects.core import cli
from projects.recommend import config
from projects.recommend.data import ITEMS_FILE, RATINGS_FILE, read_atomic, read_items
from projects.recommend.evaluate import evaluate
from projects.recommend.model import Recommender, fit
from projects.recommend.prepare import split
from projects.recommend.train import best, search

app = cli.app()

# Microsoft Recommenders' benchmark on ML-100K (per-user 75/25 split, k = 10).
ANCHORS = {
    "SAR": {"precision_at_10": 0.331, "ndcg_at_10": 0.382},
    "BPR": {"precision_at_10": 0.388, "ndcg_at_10": 0.442},
    "BiVAE": {"precision_at_10": 0.412, "ndcg_at_10": 0.475},
}
TARGET = {"precision_at_10": 0.42, "ndcg_at_10": 0.48}
SHOWN = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage_at_10")


def _timings_us(call: Callable[[int], object], arguments: list[int]) -> dict[str, float]:
    """p50, p99 and mean of `call(argument)` over `arguments`, in microseconds."""
    times = []
    for argument in arguments:
        start = time.perf_counter()
        call(argument)
        times.append((time.perf_counter() - start) * 1e6)
    return {
        "p50": float(np.percentile(times, 50)),
        "p99": float(np.percentile(times, 99)),
        "mean": float(np.mean(times)),
    }


def _speed(recommender: Recommender, repeats: int) -> None:
    users = np.resize(recommender.user_ids, repeats).tolist()
    items = np.resize(recommender.item_ids, repeats).tolist()
    rows = {
        "recommend, known user, k=10": _timings_us(lambda u: recommender.recommend(u, 10), users),
        "recommend, unknown user (cold start), k=10": _timings_us(
            lambda u: recommender.recommend(-u, 10), users
        ),
        "recommend, known user, k=10, seen items kept": _timings_us(
            lambda u: recommender.recommend(u, 10, exclude_seen=False), users
        ),
        "similar_items, k=10": _timings_us(lambda i: recommender.similar_items(i, 10), items),
    }
    print("\n| call (in process, one at a time) | p50 µs | p99 µs | mean µs |")
    print("|---|---|---|---|")
    for name, t in rows.items():
        print(f"| {name} | {t['p50']:.1f} | {t['p99']:.1f} | {t['mean']:.1f} |")
    precompute = []
    for _ in range(20):
        start = time.perf_counter()
        recommender.precompute()
        precompute.append((time.perf_counter() - start) * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.npz"
        recommender.save(path)
        start = time.perf_counter()
        Recommender.load(path)
        load_ms = (time.perf_counter() - start) * 1000
    print(
        f"\nPrecomputing every user's top-{recommender.top.shape[1]} list "
        f"({len(recommender.user_ids)} users x {recommender.n_items} items): "
        f"median {statistics.median(precompute):.1f} ms, max {max(precompute):.1f} ms over 20 runs "
        "(target ≤ 100 ms)."
    )
    print(f"Loading the saved model, precomputation included: {load_ms:.0f} ms.")


def _table(runs: list[dict], baselines: list[dict]) -> None:
    seeds = len(runs)
    print(f"\n| metric | model, mean of {seeds} seeds | std | min | max | popularity | target |")
    print("|---|---|---|---|---|---|---|")
    for key in SHOWN:
        values = [r[key] for r in runs]
        spread = statistics.stdev(values) if seeds > 1 else 0.0
        target = f"≥ {TARGET[key]}" if key in TARGET else "-"
        base = statistics.mean(b[key] for b in baselines)
        print(
            f"| {key} | {statistics.mean(values):.4f} | {spread:.4f} | {min(values):.4f} "
            f"| {max(values):.4f} | {base:.4f} | {target} |"
        )
    print("\n| model | precision@10 | nDCG@10 |\n|---|---|---|")
    for name, anchor in ANCHORS.items():
        print(f"| {name} (Microsoft Recommenders) | {anchor['precision_at_10']:.3f} "
              f"| {anchor['ndcg_at_10']:.3f} |")  # fmt: skip
    means = {key: statistics.mean(r[key] for r in runs) for key in TARGET}
    print(f"| this model, mean of {seeds} seeds | {means['precision_at_10']:.3f} "
          f"| {means['ndcg_at_10']:.3f} |")  # fmt: skip
    verdicts = [
        f"{key} {means[key]:.4f} ≥ {bound}: {'met' if means[key] >= bound else 'MISSED'}"
        for key, bound in TARGET.items()
    ]
    print("\n" + "; ".join(verdicts))


@app.command()
def main(
    seeds: Annotated[int, typer.Option(help="How many split seeds (0, 1, ...).")] = 3,
    repeats: Annotated[int, typer.Option(help="Calls per timed operation.")] = 20000,
) -> None:
    """Print markdown tables of quality (mean and spread over seeds) and in-process speed."""
    params = config.load()
    ratings = read_atomic(config.RAW_DIR / RATINGS_FILE)
    items = read_items(config.RAW_DIR / ITEMS_FILE)
    runs, baselines, ease_only = [], [], []
    for seed in range(seeds):
        p = params.prepare
        fit_part, validation, test = split(ratings, p.test_size, p.validation_size, seed)
        train = pd.concat([fit_part, validation])
        start = time.perf_counter()
        results = search(fit_part, validation, items, params.train)
        chosen, _ = best(results, params.train.selection_metric)
        recommender = fit(train, items, chosen)
        seconds = time.perf_counter() - start
        metrics = evaluate(recommender, test)[0]
        baselines.append(metrics.pop("baseline"))
        runs.append(metrics)
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in SHOWN)
        print(f"seed {seed}: {shown}; chose {chosen}; search + fit {seconds:.1f} s", flush=True)
        # what the graph filter adds: plain EASE, its L2 also chosen on validation
        if (results["blend"] == 0).any():
            plain, _ = best(results[results["blend"] == 0], params.train.selection_metric)
            ease_only.append(evaluate(fit(train, items, plain), test)[0])
    _table(runs, baselines)
    if ease_only:
        means = [f"{key} {statistics.mean(r[key] for r in ease_only):.4f}" for key in TARGET]
        print("\nEASE alone (blend 0, L2 chosen on validation), same seeds: " + ", ".join(means))
    _speed(recommender, repeats)


if __name__ == "__main__":
    cli.run(app)
