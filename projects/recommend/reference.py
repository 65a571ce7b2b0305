"""Stage `recommend-reference`: what the champion serves for its training data, as monitoring's
reference.

A request becomes its route, whether the user was unknown (cold start), and the mean popularity
(share of training users who rated them) and mean release year of the items served. The
reference asks what traffic asks: every training user's list, plus similar-item lists for items
drawn as often as they were rated, in the same mix as traffic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from projects.core import cli, paths, reference
from projects.core.reference import Schema
from projects.recommend import config
from projects.recommend.data import ITEMS_FILE, read_items
from projects.recommend.model import Recommender

app = cli.app()

# Traffic is a mix of the two routes; the reference holds the same mix, so that a change in the
# mix is drift and the mix itself is not.
SIMILAR_ITEMS_SHARE = 0.2
K = 10
SEED = 0

SCHEMA = Schema(
    numerical=("served_year",),
    categorical=("route", "cold_start"),
    prediction="served_popularity",
    prediction_label=None,
    record_fields=("prediction_id", "route", "item_ids"),
    routes=("recommend", "similar_items"),
)


def served_measures(
    item_lists: list[list[int]], popularity: dict[int, float], years: dict[int, float]
) -> pd.DataFrame:
    """Mean popularity and mean release year of each served list; `item_ids` as text."""
    lengths = np.fromiter(map(len, item_lists), dtype=np.int64, count=len(item_lists))
    flat = np.fromiter((i for items in item_lists for i in items), dtype=np.int64)
    size = int(max(flat.max(initial=0), *popularity, *years, 0)) + 1
    shares, released = np.zeros(size), np.full(size, np.nan)
    shares[list(popularity)], released[list(years)] = (
        list(popularity.values()),
        list(years.values()),
    )
    row = np.repeat(np.arange(len(item_lists)), lengths)
    flat_years = released[flat]
    dated = ~np.isnan(flat_years)
    n = len(item_lists)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty list has no mean
        mean_share = np.bincount(row, shares[flat], n) / lengths
        mean_year = np.bincount(row[dated], flat_years[dated], n) / np.bincount(row[dated], None, n)
    return pd.DataFrame(
        {
            "served_popularity": mean_share,
            "served_year": mean_year,
            "item_ids": [" ".join(map(str, items)) for items in item_lists],
        }
    )


def context_of(recommender: Recommender, items: pd.DataFrame) -> dict[str, Any]:
    """Popularity and release year by item id, and the catalogue's size."""
    dated = items.dropna(subset=["year"])
    ids, shares = recommender.item_ids.tolist(), recommender.popularity.tolist()
    return {
        "popularity": {str(i): round(p, 6) for i, p in zip(ids, shares, strict=True)},
        "years": {str(i): int(y) for i, y in zip(dated["item_id"], dated["year"], strict=True)},
        "catalogue_size": len(ids),
    }


def lookups(context: dict[str, Any]) -> tuple[dict[int, float], dict[int, float]]:
    popularity = {int(i): float(p) for i, p in context["popularity"].items()}
    years = {int(i): float(y) for i, y in context["years"].items()}
    return popularity, years


def build(recommender: Recommender, items: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference frame and its context."""
    context = context_of(recommender, items)
    users = recommender.user_ids.tolist()
    n_similar = round(len(users) * SIMILAR_ITEMS_SHARE / (1 - SIMILAR_ITEMS_SHARE))
    rng = np.random.default_rng(SEED)
    weights = recommender.popularity / recommender.popularity.sum()
    queried = rng.choice(recommender.item_ids, size=n_similar, p=weights).tolist()
    lists = [[i.item_id for i in recommender.recommend(u, K).items] for u in users]
    lists += [[i.item_id for i in recommender.similar_items(q, K)] for q in queried]
    frame = served_measures(lists, *lookups(context))
    frame.insert(0, "route", ["recommend"] * len(users) + ["similar_items"] * n_similar)
    frame.insert(1, "cold_start", "false")
    return frame, context


def window_frame(records: pd.DataFrame, context: dict[str, Any]) -> pd.DataFrame:
    """Request-log records of both routes as reference columns (plus `prediction_id`)."""
    # a list from the JSON parser, or an array from Arrow's
    lists = [
        items.tolist()
        if isinstance(items, np.ndarray)
        else items
        if isinstance(items, list)
        else []
        for items in records["item_ids"]
    ]
    frame = served_measures(lists, *lookups(context))
    frame.insert(0, "route", records["route"].to_numpy())
    # similar-item records have no user, so no cold start
    cold = records.get("cold_start", pd.Series(None, index=records.index, dtype=object))
    frame.insert(1, "cold_start", np.where(cold.eq(True), "true", "false"))
    frame["prediction_id"] = records["prediction_id"].to_numpy()
    return frame


def schema(context: dict[str, Any]) -> Schema:
    """The columns; they do not depend on the context."""
    del context
    return SCHEMA


@app.command()
def main(
    model_record: Annotated[Path, typer.Option(help="model.json written by train.")] = (
        config.MODEL_DIR / "model.json"
    ),
    items_file: Annotated[Path, typer.Option(help="The item metadata.")] = (
        config.RAW_DIR / ITEMS_FILE
    ),
    out_dir: Annotated[Path, typer.Option(help="Where the reference goes.")] = (
        paths.REFERENCE_DIR / config.NAME
    ),
) -> None:
    """Write the champion's reference, unless the champion and its reference are unchanged."""
    from projects.recommend.evaluate import load_recommender

    def from_champion(model_uri: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        return build(load_recommender(model_uri), read_items(items_file))

    reference.run_stage(
        config.NAME, config.MODEL_NAME, model_record, out_dir, __file__, from_champion
    )


if __name__ == "__main__":
    cli.run(app)
