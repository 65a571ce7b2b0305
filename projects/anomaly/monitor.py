"""What `make monitor` measures for the log anomaly detector, beyond drift and quality, and how its
dashboard draws it (the columns are `projects.anomaly.reference`'s)."""

from __future__ import annotations

from typing import Any

from evidently.metrics import CategoryCount, MeanValue, QuantileValue

from monitoring.specs import Spec, share


def measures(context: dict[str, Any]) -> list[Any]:
    """The Evidently metrics of its measures, given the reference context."""
    del context
    return [
        MeanValue(column="log_score"),
        QuantileValue(column="log_score", quantile=0.95),
        CategoryCount(column="label", category="Anomaly"),
        MeanValue(column="unknown_rate"),
    ]


SPEC = Spec(
    "anomaly",
    "Log anomaly detector: HDFS sessions against the champion's training sessions",
    True,
    (
        "Predictions: anomaly rate",
        [("anomaly rate", "CategoryCount", share("label"))],
    ),
    (
        "Unknown-event rate",
        [("mean unknown-event rate", "MeanValue", {"column": "unknown_rate"})],
    ),
    measures,
)
