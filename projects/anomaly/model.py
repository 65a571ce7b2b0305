"""Anomaly detection on event-count vectors of sessions (one session per HDFS block).

The default model is unsupervised: PCA's residual subspace (Xu et al. 2009), as loglizer does
it. Counts are weighted (TF-IDF, or not at all: `anomaly.train.weighting`) and centred; the
principal components that keep `variance` of the variance span normal behaviour; a session's
score is its squared distance from that subspace (the SPE). The one labelled choice is the
decision threshold, chosen on a validation split. A supervised logistic regression on event and
event-pair counts is trained for comparison when labels exist.

`Detector` bundles the templates (to parse raw lines), the event vocabulary, the PCA state and
the threshold: everything serving needs, saved as plain arrays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from projects.anomaly.parsing import UNKNOWN, Templates, sessions


def count_vectors(events: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> np.ndarray:
    """One row of event counts per session; events outside `vocabulary` count as `UNKNOWN`.

    `vocabulary[0]` must be `UNKNOWN`.
    """
    column = {event: i for i, event in enumerate(vocabulary)}
    counts = np.zeros((len(events), len(vocabulary)))
    for row, session in enumerate(events):
        for event in session:
            counts[row, column.get(event, 0)] += 1
    return counts


class SubspaceDetector:
    """PCA residual (SPE) anomaly scores, scikit-learn style: `fit(X)`, `score_samples(X)`."""

    def __init__(self, weighting: str = "tfidf", variance: float = 0.95) -> None:
        self.weighting = weighting
        self.variance = variance

    def fit(self, counts: np.ndarray) -> SubspaceDetector:
        n = len(counts)
        if self.weighting == "tfidf":
            seen_in = (counts > 0).sum(axis=0)
            self.idf_ = np.log((1 + n) / (1 + seen_in)) + 1  # smooth, as scikit-learn's
        else:
            self.idf_ = np.ones(counts.shape[1])
        weighted = counts * self.idf_
        self.mean_ = weighted.mean(axis=0)
        _, singular, vt = np.linalg.svd(weighted - self.mean_, full_matrices=False)
        explained = np.cumsum(singular**2) / max(np.sum(singular**2), 1e-12)
        rank = int(np.searchsorted(explained, self.variance) + 1)
        self.components_ = vt[: min(rank, len(vt))]
        return self

    def residuals(self, counts: np.ndarray) -> np.ndarray:
        """What the normal subspace cannot explain of each row, per column."""
        centred = counts * self.idf_ - self.mean_
        return centred - (centred @ self.components_.T) @ self.components_

    def score_samples(self, counts: np.ndarray) -> np.ndarray:
        """Squared prediction error: the squared norm of what the normal subspace cannot explain."""
        residual = self.residuals(counts)
        return np.einsum("ij,ij->i", residual, residual)


def best_threshold(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """The score threshold with the highest F1 on labelled sessions (score >= threshold flags)."""
    from sklearn.metrics import precision_recall_curve

    if not is_anomaly.any():
        return float(np.max(scores)) + 1.0
    precision, recall, thresholds = precision_recall_curve(is_anomaly, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def supervised_input(events: Sequence[Sequence[str]]) -> pd.DataFrame:
    """What the supervised model reads: an `events` column of space-separated event ids."""
    return pd.DataFrame({"events": [" ".join(session) for session in events]})


def train_supervised(events: Sequence[Sequence[str]], is_anomaly: np.ndarray) -> Pipeline:
    """The supervised comparison: logistic regression on log counts of events and of pairs of
    consecutive events, so that it sees order as well as counts. It predicts from
    `supervised_input(events)`.
    """
    model = make_pipeline(
        ColumnTransformer(
            [("events", CountVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=(1, 2)),
              "events")]
        ),
        TfidfTransformer(use_idf=False, sublinear_tf=True, norm=None),  # 1 + log(count)
        LogisticRegression(class_weight="balanced", max_iter=5000),
    )  # fmt: skip
    return model.fit(supervised_input(events), is_anomaly)


@dataclass(frozen=True, slots=True)
class EventShare:
    """One event's part in a session's score: its count and its share of the squared residual."""

    event: str
    template: str
    count: int
    share: float


@dataclass(frozen=True)
class Scored:
    """One session's verdict."""

    block_id: str
    score: float
    is_anomaly: bool
    unknown_events: int


class Detector:
    """The product: templates, vocabulary, the subspace detector and its threshold."""

    def __init__(
        self,
        templates: Templates,
        vocabulary: Sequence[str],
        subspace: SubspaceDetector,
        threshold: float,
    ) -> None:
        self.templates = templates
        self.vocabulary = list(vocabulary)
        self.subspace = subspace
        self.threshold = float(threshold)

    def scores(self, events: Sequence[Sequence[str]]) -> np.ndarray:
        """Anomaly scores of sessions given as event-id sequences."""
        return self.subspace.score_samples(count_vectors(events, self.vocabulary))

    def score_sessions(
        self, block_ids: Sequence[str], events: Sequence[Sequence[str]]
    ) -> list[Scored]:
        """Verdicts for sessions given as event-id sequences; unknown ids count as `E0`."""
        known = set(self.vocabulary[1:])
        scores = self.scores(events)
        return [
            Scored(
                block,
                float(score),
                bool(score >= self.threshold),
                sum(1 for e in session if e not in known),
            )
            for block, session, score in zip(block_ids, events, scores, strict=True)
        ]

    def explain(self, events: Sequence[str], top: int = 5) -> list[EventShare]:
        """The `top` events that contributed most to a session's score.

        The score is a sum of squares over events (the residual of each event's count), so each
        event's share of it is exact; shares of all events sum to 1.
        """
        counts = count_vectors([events], self.vocabulary)
        squared = self.subspace.residuals(counts)[0] ** 2
        total = float(squared.sum())
        if total <= 0:
            return []
        templates = dict(zip(self.templates.event_ids, self.templates.templates, strict=True))
        order = np.argsort(-squared, kind="stable")[:top]
        return [
            EventShare(
                self.vocabulary[i],
                templates.get(self.vocabulary[i], "(unknown event)"),
                int(counts[0, i]),
                round(float(squared[i]) / total, 6),
            )
            for i in order
        ]

    def score_lines(self, lines: Sequence[str]) -> list[Scored]:
        """Parse raw HDFS lines with the model's templates, group them by block, score each."""
        grouped, _ = sessions(lines, self.templates)
        return self.score_sessions(list(grouped), list(grouped.values()))

    def save(self, path: Path) -> None:
        """Write the model as one `.npz` of plain arrays (no pickle)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(
                f,
                templates=np.array(self.templates.to_json()),
                vocabulary=np.array(self.vocabulary),
                settings=np.array(
                    json.dumps(
                        {"weighting": self.subspace.weighting, "variance": self.subspace.variance}
                    )
                ),
                idf=self.subspace.idf_,
                mean=self.subspace.mean_,
                components=self.subspace.components_,
                threshold=np.array(self.threshold),
            )

    @classmethod
    def load(cls, path: Path) -> Detector:
        """Read a model `save` wrote; no pickled objects are accepted."""
        with np.load(path, allow_pickle=False) as arrays:
            subspace = SubspaceDetector(**json.loads(str(arrays["settings"])))
            subspace.idf_, subspace.mean_ = arrays["idf"], arrays["mean"]
            subspace.components_ = arrays["components"]
            return cls(
                Templates.from_json(str(arrays["templates"])),
                [str(v) for v in arrays["vocabulary"]],
                subspace,
                float(arrays["threshold"]),
            )


def vocabulary_of(templates: Templates) -> list[str]:
    """The count-vector columns: the unknown event first, then every template's event."""
    return [UNKNOWN, *templates.event_ids]
