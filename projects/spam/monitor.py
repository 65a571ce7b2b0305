"""What `make monitor` measures for the spam classifier, beyond drift and quality, and how its
dashboard draws it (the columns are `projects.spam.reference`'s)."""

from __future__ import annotations

from typing import Any

from evidently.metrics import CategoryCount, MeanValue, QuantileValue

from monitoring.specs import Spec, share


def measures(context: dict[str, Any]) -> list[Any]:
    """The Evidently metrics of its measures, given the reference context."""
    del context
    return [
        MeanValue(column="text_length"),
        QuantileValue(column="text_length", quantile=0.95),
        MeanValue(column="oov_rate"),
        MeanValue(column="spam_probability"),
        CategoryCount(column="label", category="spam"),
    ]


SPEC = Spec(
    "spam",
    "Spam classifier: SMS traffic against the champion's training messages",
    True,
    (
        "Predictions: spam share and mean spam probability",
        [
            ("spam share", "CategoryCount", share("label")),
            ("mean P(spam)", "MeanValue", {"column": "spam_probability"}),
        ],
    ),
    (
        "Out-of-vocabulary rate",
        [("mean OOV rate", "MeanValue", {"column": "oov_rate"})],
    ),
    measures,
)
