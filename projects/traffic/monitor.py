"""What `make monitor` measures for the request pattern analyzer, beyond drift and quality, and
how its dashboard draws it (the columns are `projects.traffic.reference`'s)."""

from __future__ import annotations

from typing import Any

from evidently.metrics import CategoryCount, MeanValue, QuantileValue

from monitoring.specs import Spec, share


def measures(context: dict[str, Any]) -> list[Any]:
    """The Evidently metrics of its measures, given the reference context."""
    del context
    return [
        CategoryCount(column="flagged", category="true"),
        MeanValue(column="score"),
        QuantileValue(column="score", quantile=0.95),
        CategoryCount(column="status_class", category="4xx"),
        MeanValue(column="body_length"),
    ]


SPEC = Spec(
    "traffic",
    "Request pattern analyzer: API requests against the champion's training traffic",
    True,
    (
        "Predictions: share of requests flagged",
        [("flagged share", "CategoryCount", share("flagged"))],
    ),
    (
        "Request scores and client errors",
        [
            ("mean score", "MeanValue", {"column": "score"}),
            ("4xx share", "CategoryCount", share("status_class")),
        ],
    ),
    measures,
)
