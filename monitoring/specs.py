"""What monitoring measures for each project, beyond drift and quality, and how the dashboards
draw it. Column names come from each project's `reference` module, which owns the features."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from evidently.metrics import CategoryCount, MeanValue, QuantileValue

from monitoring.metrics import CatalogueCoverage

# (panel title, [(legend, metric type, labels)]) for the project-specific dashboard panels
Series = tuple[str, str, dict[str, str]]


@dataclass(frozen=True)
class Spec:
    """One project as monitoring sees it."""

    name: str
    title: str
    labelled: bool  # ground truth arrives as feedback
    prediction_panel: tuple[str, list[Series]]  # the prediction distribution over time
    measure_panel: tuple[str, list[Series]]  # the project's own measures over time
    measures: Callable[[dict[str, Any]], list[Any]]  # its Evidently metrics, given the context

    @property
    def reference(self) -> ModuleType:
        """The project's `reference` module: `schema(context)` and `window_frame(...)`."""
        return importlib.import_module(f"projects.{self.name}.reference")


def spam_measures(context: dict[str, Any]) -> list[Any]:
    del context
    return [
        MeanValue(column="text_length"),
        QuantileValue(column="text_length", quantile=0.95),
        MeanValue(column="oov_rate"),
        MeanValue(column="spam_probability"),
        CategoryCount(column="label", category="spam"),
    ]


def recommend_measures(context: dict[str, Any]) -> list[Any]:
    return [
        CatalogueCoverage(column="item_ids", catalogue_size=context["catalogue_size"]),
        MeanValue(column="served_popularity"),
        MeanValue(column="served_year"),
        CategoryCount(column="cold_start", category="true"),
    ]


def anomaly_measures(context: dict[str, Any]) -> list[Any]:
    del context
    return [
        MeanValue(column="log_score"),
        QuantileValue(column="log_score", quantile=0.95),
        CategoryCount(column="label", category="Anomaly"),
        MeanValue(column="unknown_rate"),
    ]


def _share(column: str) -> dict[str, str]:
    """The share of a `CategoryCount`; its category is not a label of its series."""
    return {"column": column, "value_type": "share"}


SPECS = {
    "spam": Spec(
        "spam",
        "Spam classifier: SMS traffic against the champion's training messages",
        True,
        (
            "Predictions: spam share and mean spam probability",
            [
                ("spam share", "CategoryCount", _share("label")),
                ("mean P(spam)", "MeanValue", {"column": "spam_probability"}),
            ],
        ),
        (
            "Out-of-vocabulary rate",
            [("mean OOV rate", "MeanValue", {"column": "oov_rate"})],
        ),
        spam_measures,
    ),
    "recommend": Spec(
        "recommend",
        "Recommender: requests against what the champion serves its training users",
        False,
        (
            "Served items: mean popularity (share of users who rated them)",
            [("mean popularity", "MeanValue", {"column": "served_popularity"})],
        ),
        (
            "Catalogue coverage and cold-start share",
            [
                ("coverage", "CatalogueCoverage", {}),
                ("cold-start share", "CategoryCount", _share("cold_start")),
            ],
        ),
        recommend_measures,
    ),
    "anomaly": Spec(
        "anomaly",
        "Log anomaly detector: HDFS sessions against the champion's training sessions",
        True,
        (
            "Predictions: anomaly rate",
            [("anomaly rate", "CategoryCount", _share("label"))],
        ),
        (
            "Unknown-event rate",
            [("mean unknown-event rate", "MeanValue", {"column": "unknown_rate"})],
        ),
        anomaly_measures,
    ),
}
