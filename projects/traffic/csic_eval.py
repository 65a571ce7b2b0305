"""`make evaluate-requests CSIC=<dir>`: both request models on the CSIC 2010 HTTP data set.

The folder holds the data set's three files of raw HTTP requests (`normalTrafficTraining.txt`,
`normalTrafficTest.txt`, `anomalousTrafficTest.txt`; see `csic.py`). The protocol:

- the pool is `normalTrafficTest.txt` + `anomalousTrafficTest.txt`, split 70/30, stratified and
  seeded;
- the unsupervised model is fitted on `normalTrafficTraining.txt` only, its threshold set on
  normal requests held out of that file (at `--fpr`, 1 % by default);
- the supervised model is fitted on the pool's 70 % plus the training file (all normal);
- both are scored on the pool's 30 %.

The last line printed is one JSON object: `{"unsupervised": {...}, "supervised": {...},
"requests": N}`, each model with `roc_auc`, `tpr_at_1pct_fpr`, `precision`, `recall` and `f1`;
`requests` counts the requests of the three files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

from projects.core import cli
from projects.core.cli import StageError
from projects.traffic.csic import FILES, read_csic, to_frame
from projects.traffic.logformat import BadLine
from projects.traffic.requests_model import RequestModel, SupervisedRequestModel

log = logging.getLogger(__name__)
app = cli.app()

TRAINING, NORMAL_TEST, ANOMALOUS_TEST = FILES
TEST_SIZE = 0.3


def read_folder(folder: Path) -> dict[str, pd.DataFrame]:
    """The three files as parsed-request frames, by file name.

    Raises:
        StageError: a missing folder or file, a file without requests, or a malformed request
            (naming the file and line of the first one).
    """
    if not folder.is_dir():
        raise StageError(f"{folder}: no such directory (expected the CSIC 2010 files in it)")
    frames = {}
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise StageError(
                f"{path}: no such file (the CSIC 2010 folder needs {', '.join(FILES)})"
            )
        bad: list[BadLine] = []
        requests = read_csic(path, bad=bad)
        if bad:
            first = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise StageError(f"{path}, line {first.line}: {first.reason}{more}")
        if not requests:
            raise StageError(f"{path}: no requests in the file")
        frames[name] = to_frame(requests)
        log.info("%s: %d requests", name, len(requests))
    return frames


def tpr_at_fpr(is_attack: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """The highest share of attacks caught while at most `fpr` of normal requests are flagged."""
    false_positive, true_positive, _ = skm.roc_curve(is_attack, scores)
    return float(true_positive[false_positive <= fpr + 1e-12].max())


def model_scores(
    is_attack: np.ndarray, scores: np.ndarray, flagged: np.ndarray
) -> dict[str, float]:
    """ROC AUC and recall at 1 % false positives (from scores); precision, recall and F1 of the
    model's own decisions."""
    return {
        "roc_auc": round(float(skm.roc_auc_score(is_attack, scores)), 6),
        "tpr_at_1pct_fpr": round(tpr_at_fpr(is_attack, scores, 0.01), 6),
        "precision": round(float(skm.precision_score(is_attack, flagged, zero_division=0.0)), 6),
        "recall": round(float(skm.recall_score(is_attack, flagged, zero_division=0.0)), 6),
        "f1": round(float(skm.f1_score(is_attack, flagged, zero_division=0.0)), 6),
    }


def evaluate_csic(frames: dict[str, pd.DataFrame], seed: int, fpr: float) -> dict[str, Any]:
    """Both models' scores on the pool's test part, fitted as the protocol says."""
    normal, anomalous = frames[NORMAL_TEST], frames[ANOMALOUS_TEST]
    pool = pd.concat([normal, anomalous], ignore_index=True)
    is_attack = np.r_[np.zeros(len(normal), dtype=int), np.ones(len(anomalous), dtype=int)]
    if min(len(normal), len(anomalous)) < 2:
        raise StageError("the pool needs at least two normal and two anomalous requests to split")
    train_rows, test_rows = train_test_split(
        np.arange(len(pool)), test_size=TEST_SIZE, stratify=is_attack, random_state=seed
    )
    test, y_test = pool.iloc[test_rows], is_attack[test_rows]

    unsupervised = RequestModel(fpr=fpr, seed=seed).fit(frames[TRAINING])
    scores = unsupervised.score(test)
    log.info("unsupervised: threshold %.3f", unsupervised.threshold_)

    training = frames[TRAINING]
    supervised_frame = pd.concat([pool.iloc[train_rows], training], ignore_index=True)
    supervised_labels = np.r_[is_attack[train_rows], np.zeros(len(training), dtype=int)]
    supervised = SupervisedRequestModel(seed=seed).fit(supervised_frame, supervised_labels)
    probability = supervised.score(test)
    return {
        "unsupervised": model_scores(y_test, scores, scores >= unsupervised.threshold_),
        "supervised": model_scores(y_test, probability, probability >= supervised.threshold_),
        "requests": int(sum(len(frame) for frame in frames.values())),
    }


@app.command()
def main(
    csic: Annotated[
        Path, typer.Option(help="Folder with the CSIC 2010 files (normalTrafficTraining.txt, ...).")
    ],
    seed: Annotated[int, typer.Option(help="Seed of the 70/30 split and of the models.")] = 0,
    fpr: Annotated[
        float,
        typer.Option(help="False-positive rate the unsupervised threshold allows.", min=0, max=1),
    ] = 0.01,
) -> None:
    """Print the unsupervised and supervised request models' test scores as one JSON line."""
    frames = read_folder(csic)
    print(json.dumps(evaluate_csic(frames, seed, fpr)))


if __name__ == "__main__":
    cli.run(app)
