"""The spam model: word and character TF-IDF, a calibrated linear SVM, a chosen threshold.

Blocking a real message costs more than letting one spam through, so the decision threshold
is set from out-of-fold probabilities on the training split: the lowest threshold whose
share of blocked ham stays within the `max_blocked_ham` budget. The test split is never used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import FixedThresholdClassifier, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from projects.spam.config import TrainParams

POSITIVE = "spam"
# Types of a fitted model that skops does not trust by default; loading trusts exactly these.
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
)


def features(params: TrainParams) -> ColumnTransformer:
    """TF-IDF of word n-grams and of character n-grams within word bounds, on column `text`."""
    words = TfidfVectorizer(ngram_range=(1, params.word_ngram_max), sublinear_tf=True)
    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(params.char_ngram_min, params.char_ngram_max),
        min_df=params.char_min_df,
        sublinear_tf=True,
    )
    return ColumnTransformer([("words", words, "text"), ("chars", chars, "text")])


def scorer(params: TrainParams, seed: int) -> Pipeline:
    """Features and a linear SVM whose margins are Platt-scaled into spam probabilities."""
    # liblinear shuffles its coordinate descent: seed it, or the same data gives other floats
    svm = LinearSVC(C=params.C, random_state=seed)
    # ensemble=False keeps one SVM fitted on all the data, so predicting costs one model
    calibrated = CalibratedClassifierCV(
        svm, method="sigmoid", cv=params.calibration_folds, ensemble=False
    )
    return Pipeline([("features", features(params)), ("svm", calibrated)])


def spam_probability(model: Pipeline, texts: pd.DataFrame) -> np.ndarray:
    """P(spam) for each row of `texts`."""
    classes = list(model.classes_)
    return model.predict_proba(texts)[:, classes.index(POSITIVE)]


def choose_threshold(probability: np.ndarray, is_spam: np.ndarray, max_blocked_ham: float) -> float:
    """The lowest threshold that blocks at most `max_blocked_ham` of the ham, never below 0.5."""
    ham = np.sort(probability[~is_spam])[::-1]
    allowed = int(np.floor(max_blocked_ham * len(ham)))
    if allowed >= len(ham):
        return 0.5
    # strictly above the highest ham score that must not be blocked
    return float(max(0.5, np.nextafter(ham[allowed], 1.0)))


def train(messages: pd.DataFrame, params: TrainParams, seed: int) -> FixedThresholdClassifier:
    """Fit the model on `messages` (columns `text`, `label`) and fix its threshold."""
    texts, labels = messages[["text"]], messages["label"].to_numpy()
    folds = StratifiedKFold(params.calibration_folds, shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(
        scorer(params, seed), texts, labels, cv=folds, method="predict_proba"
    )
    classes = sorted(set(labels))
    threshold = choose_threshold(
        out_of_fold[:, classes.index(POSITIVE)], labels == POSITIVE, params.max_blocked_ham
    )
    model = FixedThresholdClassifier(
        scorer(params, seed),
        threshold=threshold,
        pos_label=POSITIVE,
        response_method="predict_proba",
    )
    return model.fit(texts, labels)


@dataclass(frozen=True, slots=True)
class TokenWeight:
    """How much one whitespace-separated token moved a text's score (positive: toward spam)."""

    token: str
    weight: float


class SpamScorer:
    """The fitted model's spam probability and decision, computed for serving.

    It gives the same numbers as `spam_probability` and `model.predict`, but calls the fitted
    vectorizers, SVM and Platt sigmoid directly, without pandas and scikit-learn's per-call
    checks, which cost more than the model itself on one short text. Because the score is a
    linear margin, it also splits a text's margin exactly into per-feature shares (`explain`).
    """

    def __init__(self, model: FixedThresholdClassifier) -> None:
        pipeline = model.estimator_
        features = pipeline.named_steps["features"]
        calibrated = pipeline.named_steps["svm"].calibrated_classifiers_[0]
        if list(calibrated.classes) != ["ham", POSITIVE]:
            raise ValueError(f"expected classes ['ham', 'spam'], got {list(calibrated.classes)}")
        self.words = features.named_transformers_["words"]
        self.chars = features.named_transformers_["chars"]
        self.coef = calibrated.estimator.coef_[0]
        self.intercept = float(calibrated.estimator.intercept_[0])
        sigmoid = calibrated.calibrators[0]
        self.a, self.b = float(sigmoid.a_), float(sigmoid.b_)
        self.threshold = float(model.threshold)
        self._word_parts = self.words.build_analyzer()
        self._char_parts = self.chars.build_analyzer()
        self._names: np.ndarray | None = None  # built on the first explanation

    def _features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return sparse.hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()

    def probability(self, texts: Sequence[str]) -> np.ndarray:
        """P(spam) for each text."""
        margin = self._features(texts) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(self.a * margin + self.b))

    def is_spam(self, probability: np.ndarray) -> np.ndarray:
        """The model's decision: spam at or above its threshold, as `model.predict` decides."""
        return probability >= self.threshold

    def explain(self, text: str, top: int = 5) -> list[TokenWeight]:
        """The `top` tokens of `text` that moved its margin most, either way.

        Each feature's share of the margin (TF-IDF value times SVM weight) is split among the
        whitespace tokens it occurs in: a word n-gram goes to the tokens that contain its words,
        a character n-gram to the tokens that contain it. A word pair that spans two tokens is
        split between them.
        """
        if self._names is None:
            self._names = np.concatenate(
                [self.words.get_feature_names_out(), self.chars.get_feature_names_out()]
            )
        row = self._features([text])
        shares = row.data * self.coef[row.indices]
        n_words = len(self.words.vocabulary_)
        tokens = text.split()
        # where each thing a vectorizer sees in a token occurs: one pass over the tokens, so a
        # long text costs its length, not its length times its number of features
        in_words: dict[str, set[int]] = {}
        in_chars: dict[str, set[int]] = {}
        for i, token in enumerate(tokens):
            for part in self._word_parts(token):
                in_words.setdefault(part, set()).add(i)
            for gram in self._char_parts(token):
                in_chars.setdefault(gram, set()).add(i)
        weights = np.zeros(len(tokens))
        for index, share in zip(row.indices, shares, strict=True):
            name = str(self._names[index])
            if index < n_words:
                holders = set().union(*(in_words.get(part, set()) for part in name.split(" ")))
            else:
                holders = in_chars.get(name, set())
            if holders:
                weights[sorted(holders)] += share / len(holders)
        totals: dict[str, float] = {}
        for token, weight in zip(tokens, weights, strict=True):
            totals[token] = totals.get(token, 0.0) + float(weight)
        ranked = sorted(totals.items(), key=lambda item: -abs(item[1]))[:top]
        return [TokenWeight(token, round(weight, 6)) for token, weight in ranked]
