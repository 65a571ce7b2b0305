"""Log anomaly detection quality over 3 simulator seeds, beside loglizer's table; and speed.

Run: `make bench BENCH=anomaly` (or `python -m projects.anomaly.bench`). Each seed simulates its
own log (params.yaml's size and anomaly share), and the pipeline's prepare and train run on it.
Then the detector and the supervised model are scored once on that seed's test split.
"""

from __future__ import annotations

import statistics
import time
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from projects.anomaly import config
from projects.anomaly.data import events_of
from projects.anomaly.evaluate import evaluate
from projects.anomaly.prepare import prepare
from projects.anomaly.simulator import simulate
from projects.anomaly.train import train
from projects.core import cli

app = cli.app()

# loglizer's benchmark on the real HDFS_v1 (F1), and DeepLog's paper.
ANCHORS = {"PCA": 0.769, "Invariants Mining": 0.915, "Isolation Forest": 0.802,
           "LogClustering": 0.837, "Logistic Regression": 0.933, "Decision Tree": 0.998,
           "DeepLog": 0.96}  # fmt: skip
TARGET = {"unsupervised": 0.92, "supervised": 0.97}


def _speed(detector, sessions: pd.DataFrame, lines: list[str], repeats: int) -> None:
    events = events_of(sessions)
    batch = (events * (100_000 // len(events) + 1))[:100_000]
    start = time.perf_counter()
    detector.scores(batch)
    batch_seconds = time.perf_counter() - start
    one = []
    for session in events[:repeats]:
        start = time.perf_counter()
        detector.score_sessions(["blk"], [session])
        one.append((time.perf_counter() - start) * 1000)
    block = sessions["BlockId"].iloc[0]
    block_lines = [line for line in lines if block in line]
    raw = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.score_lines(block_lines)
        raw.append((time.perf_counter() - start) * 1000)
    print(
        f"\nBatch of 100,000 sessions (event ids to verdicts): {batch_seconds:.2f} s, "
        f"{100_000 / batch_seconds:,.0f} sessions/s (target ≥ 100,000/s)."
    )
    print(
        f"One session (event ids): p50 {np.percentile(one, 50):.3f} ms, "
        f"p99 {np.percentile(one, 99):.3f} ms (target ≤ 10 ms)."
    )
    print(f"One session from its {len(block_lines)} raw lines (parse + group + score): "
          f"p50 {np.percentile(raw, 50):.3f} ms, p99 {np.percentile(raw, 99):.3f} ms.")  # fmt: skip


@app.command()
def main(
    seeds: Annotated[int, typer.Option(help="How many simulator seeds (0, 1, ...).")] = 3,
    repeats: Annotated[int, typer.Option(help="Calls per timed single-session operation.")] = 2000,
) -> None:
    """Print markdown tables of F1 over seeds, recall per anomaly kind, and speed."""
    params = config.load()
    runs, kinds = [], []
    for seed in range(seeds):
        lines, labels = simulate(params.simulate.blocks, params.simulate.anomaly_share, seed)
        frames, templates, summary = prepare(lines, labels[["BlockId", "Label"]], params.prepare)
        detector, supervised = train(frames["train"], frames["validation"], templates, params.train)
        metrics = evaluate(detector, frames["test"], supervised)[0]
        runs.append(metrics)
        test = frames["test"].merge(labels[["BlockId", "Kind"]], on="BlockId")
        flagged = detector.scores(events_of(test)) >= detector.threshold
        kinds.append(test.assign(flagged=flagged).groupby("Kind")["flagged"].agg(["sum", "size"]))
        print(f"seed {seed}: {len(lines)} lines, {len(templates.templates)} templates, parse rate "
              f"{summary['parse_rate']:.4f}; unsupervised {metrics['f1']:.4f} "
              f"(P {metrics['precision']:.3f} R {metrics['recall']:.3f}); supervised "
              f"{metrics['supervised']['f1']:.4f}", flush=True)  # fmt: skip
    print("\n| F1 on the test split | mean | std | min | max | target |\n|---|---|---|---|---|---|")
    for name, values in (
        ("unsupervised (default)", [r["f1"] for r in runs]),
        ("supervised (logistic regression)", [r["supervised"]["f1"] for r in runs]),
    ):
        target = TARGET["unsupervised" if name.startswith("un") else "supervised"]
        print(f"| {name} | {statistics.mean(values):.4f} | {statistics.stdev(values):.4f} | "
              f"{min(values):.4f} | {max(values):.4f} | ≥ {target} |")  # fmt: skip
    for key in ("precision", "recall"):
        print(f"\nunsupervised {key}: mean {statistics.mean(r[key] for r in runs):.4f}")
    per_kind = sum(k for k in kinds)
    print("\n| kind | flagged / test sessions, all seeds |\n|---|---|")
    for kind, row in per_kind.iterrows():
        print(f"| {kind} | {int(row['sum'])} / {int(row['size'])} |")
    print("\n| loglizer on real HDFS_v1 | F1 |\n|---|---|")
    for name, f1 in ANCHORS.items():
        print(f"| {name} | {f1:.3f} |")
    _speed(detector, frames["test"], lines, repeats)


if __name__ == "__main__":
    cli.run(app)
