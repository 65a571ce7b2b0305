"""Detection metrics at the request and the client level: thresholds at a false-positive rate,
recall per kind, false-positive rates per kind of normal traffic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold that flags (score > threshold) at most `fpr` of `normal_scores`."""
    scores = np.sort(np.asarray(normal_scores, dtype=float))
    if len(scores) == 0:
        return float("inf")
    allowed = int(np.floor(fpr * len(scores)))
    if allowed >= len(scores):
        return float("-inf")  # every score may be flagged
    return float(scores[len(scores) - allowed - 1])


def recall_at_fpr(scores: np.ndarray, positive: np.ndarray, fpr: float) -> float:
    """Recall with the threshold that flags at most `fpr` of the negatives (the ROC curve's
    height at that rate): how well the scores rank, whatever threshold the model set."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    if not positive.any() or positive.all():
        return float("nan")
    threshold = threshold_at_fpr(scores[~positive], fpr)
    return float((scores[positive] > threshold).mean())


def detection(
    scores: np.ndarray, flagged: np.ndarray, positive: np.ndarray, fpr: float
) -> dict[str, float]:
    """Precision, recall, F1 and false-positive rate of `flagged`; ROC AUC of `scores`; recall
    at a false-positive rate of `fpr` (`recall_at_<fpr in %>pct_fpr`)."""
    positive, flagged = np.asarray(positive, dtype=bool), np.asarray(flagged, dtype=bool)
    precision, recall, f1, _ = precision_recall_fscore_support(
        positive, flagged, average="binary", zero_division=0
    )
    both = positive.any() and not positive.all()
    key = f"recall_at_{fpr * 100:g}pct_fpr".replace(".", "_")
    return {
        "precision": round(float(precision), 6),
        "recall": round(float(recall), 6),
        "f1": round(float(f1), 6),
        "false_positive_rate": round(float(flagged[~positive].mean()), 6)
        if (~positive).any()
        else float("nan"),
        "roc_auc": round(float(roc_auc_score(positive, scores)), 6) if both else float("nan"),
        key: round(recall_at_fpr(scores, positive, fpr), 6),
    }


def share_by_kind(flagged: np.ndarray, kinds: Sequence[str], wanted: Sequence[str]) -> dict:
    """The share flagged within each of the `wanted` kinds present (recall for abuse kinds,
    the false-positive rate for normal ones)."""
    flagged, kinds = np.asarray(flagged, dtype=bool), np.asarray(kinds, dtype=object)
    return {
        kind: round(float(flagged[kinds == kind].mean()), 6)
        for kind in wanted
        if (kinds == kind).any()
    }
