"""Evidently metrics that the built-in ones do not cover, computed from the window's columns.

A metric's parameters become labels of its series on the dashboards, so each one reads its
numbers from the data, never from a parameter: the same metric then draws one line over time.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from evidently import Dataset
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

# set by the monitoring job on every row: the window's requests before any sampling
WINDOW_REQUESTS = "window_requests"


class WindowRequests(SingleValueMetric):
    """Requests in the window, counted before the window was sampled."""

    column: str = WINDOW_REQUESTS


class WindowRequestsCalculation(SingleValueCalculation[WindowRequests]):
    def calculate(self, context, current_data: Dataset, reference_data: Dataset | None):
        del context, reference_data
        return self.result(int(current_data.as_dataframe()[self.metric.column].max())), None

    def display_name(self) -> str:
        return "Requests in the window"


class CatalogueCoverage(SingleValueMetric):
    """Share of the catalogue that the served lists (space-separated item ids) reach."""

    column: str
    catalogue_size: int


class CatalogueCoverageCalculation(SingleValueCalculation[CatalogueCoverage]):
    def _coverage(self, data: Dataset) -> float:
        served = data.as_dataframe()[self.metric.column].dropna().str.split().explode()
        return served.nunique() / self.metric.catalogue_size

    def calculate(self, context, current_data: Dataset, reference_data: Dataset | None):
        del context
        reference = None if reference_data is None else self.result(self._coverage(reference_data))
        return self.result(self._coverage(current_data)), reference

    def display_name(self) -> str:
        return f"Catalogue coverage of '{self.metric.column}'"


Measure = Literal["accuracy", "precision", "recall", "f1"]


def quality(target: pd.Series, predicted: pd.Series, positive: str, measure: Measure) -> float:
    """`measure` of `predicted` against `target`, on the rows whose target has arrived."""
    from sklearn import metrics

    labelled = target.notna()
    truth, guess = target[labelled] == positive, predicted[labelled] == positive
    if measure == "accuracy":
        return float(metrics.accuracy_score(truth, guess))
    score = {"precision": metrics.precision_score, "recall": metrics.recall_score}.get(
        measure, metrics.f1_score
    )
    return float(score(truth, guess, zero_division=0))


class FeedbackQuality(SingleValueMetric):
    """Quality of the predictions whose ground truth has arrived as feedback."""

    target: str
    prediction: str
    positive: str
    measure: Measure


class FeedbackQualityCalculation(SingleValueCalculation[FeedbackQuality]):
    def _value(self, data: Dataset) -> float:
        frame = data.as_dataframe()
        m = self.metric
        return quality(frame[m.target], frame[m.prediction], m.positive, m.measure)

    def calculate(self, context, current_data: Dataset, reference_data: Dataset | None):
        del context
        reference = None if reference_data is None else self.result(self._value(reference_data))
        return self.result(self._value(current_data)), reference

    def display_name(self) -> str:
        return f"{self.metric.measure} on labelled predictions ('{self.metric.positive}')"
