"""Spam classifier quality over 5 split seeds, beside Almeida et al. (2011); and its speed.

Run: `make bench BENCH=spam` (or `python -m projects.spam.bench`). Each seed makes the pipeline's
own 70/30 stratified split, trains the default model (params.yaml, chosen by cross-validation on a
training split only) and scores it once on that seed's test split."""

from __future__ import annotations

import statistics
import time
from typing import Annotated

import numpy as np
import typer

from projects.core import cli
from projects.spam import config
from projects.spam.data import RAW_FILE, read_messages
from projects.spam.evaluate import evaluate
from projects.spam.model import train
from projects.spam.prepare import split

app = cli.app()

# Almeida, Gómez Hidalgo, Yamakami (2011), best result (linear SVM), 70/30 split.
PAPER = {"accuracy": 0.9764, "mcc": 0.893, "spam_caught": 0.831, "blocked_ham": 0.0018}
TARGET = {"mcc": ("≥", 0.95), "blocked_ham": ("≤", 0.002)}
SHOWN = ("accuracy", "mcc", "spam_caught", "blocked_ham", "f1", "roc_auc")


def _latency_ms(model, texts, repeats: int) -> tuple[float, float]:
    """p50 and p99 of predicting one message at a time, in milliseconds."""
    import pandas as pd

    frames = [pd.DataFrame({"text": [t]}) for t in texts]
    times = []
    for i in range(repeats):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        model.predict_proba(frame)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


@app.command()
def main(
    seeds: Annotated[int, typer.Option(help="How many split seeds (0, 1, ...).")] = 5,
) -> None:
    """Print a markdown table of the 5-seed mean and spread against the paper and the target."""
    params = config.load()
    messages = read_messages(config.RAW_DIR / RAW_FILE)
    runs, fit_seconds = [], []
    for seed in range(seeds):
        train_split, test_split = split(messages, params.prepare.test_size, seed)
        start = time.perf_counter()
        model = train(train_split, params.train, seed=seed)
        fit_seconds.append(time.perf_counter() - start)
        metrics = evaluate(model, test_split)[0]
        runs.append(metrics)
        print(f"seed {seed}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in SHOWN), flush=True)
    p50, p99 = _latency_ms(model, test_split["text"].tolist(), repeats=2000)

    print(
        f"\n| metric | mean over {seeds} seeds | std | min | max | Almeida et al. 2011 | target |"
    )
    print("|---|---|---|---|---|---|---|")
    for key in SHOWN:
        values = [r[key] for r in runs]
        paper = f"{PAPER[key]:.4f}" if key in PAPER else "-"
        target = " ".join(map(str, TARGET[key])) if key in TARGET else "-"
        print(
            f"| {key} | {statistics.mean(values):.4f} | {statistics.stdev(values):.4f} "
            f"| {min(values):.4f} | {max(values):.4f} | {paper} | {target} |"
        )
    verdicts = []
    for key, (sign, bound) in TARGET.items():
        mean = statistics.mean(r[key] for r in runs)
        ok = mean >= bound if sign == "≥" else mean <= bound
        verdicts.append(f"{key} {mean:.4f} {sign} {bound}: {'met' if ok else 'MISSED'}")
    print("\n" + "; ".join(verdicts))
    print(f"training time per seed: {statistics.mean(fit_seconds):.1f} s (5-fold threshold + fit)")
    print(f"in-process predict_proba, one message: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    cli.run(app)
