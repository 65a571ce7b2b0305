"""Stage `traffic-evaluate`: both levels and both variants on the test split.

Request level: positives are the payload and probe requests; negatives every other request
(including the single, ordinary-looking requests of scrapers or floods, which are the client
level's to catch). Client level: a session of an abusive client is positive. For each level:
precision, recall, F1 and the false-positive rate at the model's own threshold; ROC AUC; recall at
a fixed false-positive rate (the threshold that rate allows on the test negatives); recall per
attack or abuse kind; the false-positive rate per kind of normal traffic (the hard negatives);
and, for clients, how many of its first requests a session needs before it is flagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.core import cli, tracking
from projects.traffic import config
from projects.traffic.analyzer import Analyzer
from projects.traffic.clients import (
    ClientModel,
    SupervisedClientModel,
    first_flagged,
    how_early,
)
from projects.traffic.metrics import detection, share_by_kind
from projects.traffic.requests_model import SupervisedRequestModel
from projects.traffic.simulator import ABUSE_KINDS, NORMAL_KINDS, PAYLOAD_KINDS
from projects.traffic.train import read_split, session_kinds

log = logging.getLogger(__name__)
app = cli.app()

REQUEST_FPR = 0.005  # the rates for "recall at a fixed false-positive rate"
CLIENT_FPR = 0.01
ATTACK_KINDS = [*PAYLOAD_KINDS, "probe"]
EARLY_KINDS = ("scraper", "stuffing", "enumeration", "scanner")
FIRST_REQUESTS = (1, 2, 3, 5, 10, 15, 20, 30, 50)
BINS = np.linspace(-3, 3, 61)  # log10 score bins of the score plots


@dataclass
class Scored:
    """One level's scores, flags, truth and kinds on the test split."""

    scores: np.ndarray
    flagged: np.ndarray
    positive: np.ndarray
    kinds: np.ndarray  # the request kind (request level) or the client kind (client level)
    client_kinds: np.ndarray  # the client kind of each row
    threshold: float


def level_metrics(scored: Scored, fpr: float, attack_kinds: list[str]) -> dict[str, Any]:
    """The metrics of one level."""
    return {
        **detection(scored.scores, scored.flagged, scored.positive, fpr),
        "per_kind_recall": share_by_kind(scored.flagged, scored.kinds, attack_kinds),
        # every normal row by the kind of client it came from: the hard negatives
        "hard_negative_fpr": share_by_kind(
            scored.flagged[~scored.positive], scored.client_kinds[~scored.positive], NORMAL_KINDS
        ),
    }


def request_level(scores: np.ndarray, threshold: float, test: pd.DataFrame) -> Scored:
    kinds = test["request_kind"].to_numpy(dtype=object)
    return Scored(
        scores, scores > threshold, test["is_attack"].to_numpy(dtype=bool), kinds,
        test["client_kind"].to_numpy(dtype=object), threshold,
    )  # fmt: skip


def client_level(
    scores: np.ndarray, threshold: float, table: pd.DataFrame, test: pd.DataFrame
) -> Scored:
    kinds = session_kinds(test, table).to_numpy(dtype=object)
    positive = np.isin(kinds, ABUSE_KINDS)
    return Scored(scores, scores >= threshold, positive, kinds, kinds, threshold)


def early(
    model: ClientModel, test: pd.DataFrame, request_scores: np.ndarray, table: pd.DataFrame
) -> dict[str, Any]:
    """Per abuse kind: the median number of first requests after which its sessions are
    flagged (null when more than half never are) and the share flagged within 20."""
    first = first_flagged(model, test, request_scores, FIRST_REQUESTS)
    kinds = session_kinds(test, table).to_numpy(dtype=object)
    found = how_early(first, kinds)
    return {
        kind: {
            "median_requests": None if np.isnan(row.median_k) else float(row.median_k),
            "within_20": round(float(row.within_20), 6),
            "sessions": int(row.sessions),
        }
        for kind, row in found.iterrows()
        if kind in ABUSE_KINDS
    }


def evaluate(
    analyzer: Analyzer,
    supervised_requests: SupervisedRequestModel | None,
    supervised_clients: SupervisedClientModel | None,
    test: pd.DataFrame,
) -> tuple[dict[str, Any], dict[str, Scored]]:
    """Every metric of `metrics/traffic.json`, and the scored levels (for the plots)."""
    clients = analyzer.clients
    request_scores = analyzer.request_scores(test)
    table = clients.features(test, request_scores)
    levels = {
        "request": request_level(request_scores, analyzer.request_threshold, test),
        "client": client_level(clients.score(table), analyzer.client_threshold, table, test),
    }
    metrics: dict[str, Any] = {
        "request": level_metrics(levels["request"], REQUEST_FPR, ATTACK_KINDS),
        "client": level_metrics(levels["client"], CLIENT_FPR, ABUSE_KINDS),
    }
    metrics["client"]["first_requests"] = early(clients, test, request_scores, table)
    supervised: dict[str, Any] = {}
    if supervised_requests is not None:
        scores = supervised_requests.score(test)
        scored = request_level(scores, supervised_requests.threshold_ - 1e-12, test)
        supervised["request"] = level_metrics(scored, REQUEST_FPR, ATTACK_KINDS)
    if supervised_clients is not None:
        scored = client_level(
            supervised_clients.score(table), supervised_clients.threshold_, table, test
        )
        supervised["client"] = level_metrics(scored, CLIENT_FPR, ABUSE_KINDS)
    metrics["supervised"] = supervised
    metrics["request_f1"] = metrics["request"]["f1"]
    metrics["client_f1"] = metrics["client"]["f1"]
    metrics["mean_f1"] = round((metrics["request_f1"] + metrics["client_f1"]) / 2, 6)
    metrics["test"] = {
        "requests": len(test),
        "attack_requests": int(levels["request"].positive.sum()),
        "sessions": len(table),
        "abusive_sessions": int(levels["client"].positive.sum()),
    }
    return metrics, levels


def score_histogram(scored: Scored, names: tuple[str, str]) -> pd.DataFrame:
    """Counts of log10 scores per bin, negatives and positives (the score plot's data)."""
    logs = np.log10(np.clip(scored.scores, 1e-3, 1e3))
    rows = {"log10_score": np.round(BINS[:-1], 2)}
    for name, mask in ((names[0], ~scored.positive), (names[1], scored.positive)):
        rows[name] = np.histogram(logs[mask], bins=BINS)[0]
    return pd.DataFrame(rows)


def kind_recall(metrics: dict[str, Any]) -> pd.DataFrame:
    """Recall of each attack kind (requests) and abuse kind (clients)."""
    rows = [
        (f"{level}: {kind}", recall)
        for level in ("request", "client")
        for kind, recall in metrics[level]["per_kind_recall"].items()
    ]
    return pd.DataFrame(rows, columns=["kind", "recall"])


def plots(levels: dict[str, Scored], metrics: dict[str, Any]) -> tuple[dict, dict]:
    """The plots' data (CSV name -> frame, for DVC) and figures (PNG name -> figure, for
    MLflow): score distributions of both levels, and recall per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables, figures = {}, {}
    histograms = {
        "request_scores": (score_histogram(levels["request"], ("normal", "attack")), "request"),
        "client_scores": (score_histogram(levels["client"], ("normal", "abusive")), "client"),
    }
    for name, (frame, level) in histograms.items():
        tables[f"{name}.csv"] = frame
        figure, axes = plt.subplots(figsize=(7, 4))
        for column in frame.columns[1:]:
            axes.step(frame["log10_score"], frame[column], where="post", label=column)
        threshold = levels[level].threshold
        axes.axvline(
            np.log10(max(threshold, 1e-3)), color="black", linestyle="--", label="threshold"
        )
        axes.set_yscale("symlog")
        axes.set_xlabel("log10 score")
        axes.set_ylabel("requests" if level == "request" else "sessions")
        axes.set_title(f"{level.capitalize()} scores on the test split")
        axes.legend()
        figure.tight_layout()
        figures[f"{name}.png"] = figure
    recall = kind_recall(metrics)
    tables["kind_recall.csv"] = recall
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.barh(recall["kind"], recall["recall"])
    axes.set_xlim(0, 1)
    axes.set_title("Recall per kind, test split")
    figure.tight_layout()
    figures["kind_recall.png"] = figure
    return tables, figures


def load_models(
    record: dict[str, str],
) -> tuple[Analyzer, SupervisedRequestModel | None, SupervisedClientModel | None]:
    """The registered analyzer, and the supervised variants its training run logged."""
    import mlflow

    from projects.core import registry

    pyfunc = registry.load_pyfunc_model(record["model_uri"])
    analyzer = pyfunc.unwrap_python_model().analyzer
    folder = Path(
        mlflow.artifacts.download_artifacts(run_id=record["run_id"], artifact_path="supervised")
    )
    requests = folder / f"{config.SUPERVISED_REQUESTS_ARTIFACT}.skops"
    clients = folder / f"{config.SUPERVISED_CLIENTS_ARTIFACT}.npz"
    return (
        analyzer,
        SupervisedRequestModel.load(requests) if requests.exists() else None,
        SupervisedClientModel.load(clients) if clients.exists() else None,
    )


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    prepared_dir: Annotated[Path, typer.Option(help="Folder of the prepared splits.")] = (
        config.PREPARED_DIR
    ),
    metrics_file: Annotated[Path, typer.Option(help="Where the metrics go.")] = (
        config.METRICS_FILE
    ),
    plots_dir: Annotated[Path, typer.Option(help="Where the plots go.")] = config.PLOTS_DIR,
) -> None:
    """Score the registered analyzer and the supervised variants on the test split."""
    import mlflow

    from projects.core import registry

    mlflow.set_tracking_uri(tracking.tracking_uri())
    record = registry.read_record(model_record)
    test = read_split(prepared_dir / "test.parquet")
    metrics, levels = evaluate(*load_models(record), test)
    tables, figures = plots(levels, metrics)
    tracking.record_evaluation(record["run_id"], metrics, metrics_file, plots_dir, tables, figures)
    log.info(
        "request F1 %.4f (ROC AUC %.4f), client F1 %.4f (ROC AUC %.4f)",
        metrics["request"]["f1"], metrics["request"]["roc_auc"],
        metrics["client"]["f1"], metrics["client"]["roc_auc"],
    )  # fmt: skip


if __name__ == "__main__":
    cli.run(app)
