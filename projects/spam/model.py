"""The spam model: word and character TF-IDF, a calibrated linear SVM, a chosen threshold.

Blocking a real message costs more than letting one spam through, so the decision threshold
is set from out-of-fold probabilities on the training split: the lowest threshold whose
share of blocked ham stays within the `max_blocked_ham` budget. The test split is never used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
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
