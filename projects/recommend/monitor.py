"""What `make monitor` measures for the recommender, beyond drift and quality, and how its
dashboard draws it (the columns are `projects.recommend.reference`'s)."""

from __future__ import annotations

from typing import Any

from evidently.metrics import CategoryCount, MeanValue

from monitoring.metrics import CatalogueCoverage
from monitoring.specs import Spec, share


def measures(context: dict[str, Any]) -> list[Any]:
    """The Evidently metrics of its measures, given the reference context."""
    return [
        CatalogueCoverage(column="item_ids", catalogue_size=context["catalogue_size"]),
        MeanValue(column="served_popularity"),
        MeanValue(column="served_year"),
        CategoryCount(column="cold_start", category="true"),
    ]


SPEC = Spec(
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
            ("cold-start share", "CategoryCount", share("cold_start")),
        ],
    ),
    measures,
)
