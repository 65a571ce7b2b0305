"""The traffic `make simulate` sends the recommender: `/recommend` for held-out users and
`/similar_items` for held-out items, in the reference's mix. With drift strength s, a share 0.5 s
of `/recommend` users are new (cold start), and `/similar_items` rises by 0.4 s, the extra calls
on recent, little-rated movies. No labels arrive for recommendations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.simulate import Service, Window, counts, logged_rows, require
from projects.core.cli import StageError
from projects.recommend import config, data
from projects.recommend.reference import SIMILAR_ITEMS_SHARE, K

# drift at full strength (s = 1); each scales linearly with s
NEW_USER_SHARE = 0.5
EXTRA_SIMILAR_SHARE = 0.4
# new users' ids are drawn from this many ids above the largest known one
NEW_USER_RANGE = 100_000


@dataclass(frozen=True)
class RecommendPool:
    """What recommend's traffic is drawn from.

    Attributes:
        users: the users of the held-out split.
        max_user: the largest user id the data knows; new users are above it.
        items: the item of every held-out rating in the catalogue, so popular items recur.
        recent: recent, little-rated catalogue items, the drifted `/similar_items` traffic.
    """

    users: np.ndarray
    max_user: int
    items: np.ndarray
    recent: np.ndarray


def recommend_pool(test: pd.DataFrame, train: pd.DataFrame, items: pd.DataFrame) -> RecommendPool:
    """The pool of held-out ratings `test`, training ratings `train` and the catalogue `items`.

    Recent items are released in the catalogue's latest year or the one before, with fewer
    training ratings than the catalogue's median item (unrated items count 0).
    """
    catalogue = items["item_id"].to_numpy()
    counts = train["item_id"].value_counts().reindex(catalogue, fill_value=0).to_numpy()
    year = items["year"].astype("Float64")
    latest = year.max()
    is_recent = (year >= latest - 1).fillna(False).to_numpy(dtype=bool)
    return RecommendPool(
        users=np.unique(test["user_id"].to_numpy()),
        max_user=int(max(test["user_id"].max(), train["user_id"].max())),
        items=test["item_id"].to_numpy()[test["item_id"].isin(catalogue).to_numpy()],
        recent=catalogue[is_recent & (counts < np.median(counts))],
    )


@dataclass(frozen=True)
class Call:
    """One request to a route, with its JSON body."""

    route: str
    body: dict[str, int]


def recommend_requests(
    pool: RecommendPool, n: int, s: float, rng: np.random.Generator
) -> list[Call]:
    """`n` calls, `/recommend` for held-out users and `/similar_items` for held-out items in the
    reference's mix; drift adds new users and `/similar_items` on recent items."""
    similar = round(SIMILAR_ITEMS_SHARE * n)
    extra = min(round(EXTRA_SIMILAR_SHARE * s * n), n - similar)
    recommend = n - similar - extra
    new_users = round(NEW_USER_SHARE * s * recommend)
    users = np.concatenate([
        rng.choice(pool.users, recommend - new_users),
        pool.max_user + 1 + rng.integers(0, NEW_USER_RANGE, new_users),
    ])  # fmt: skip
    # without recent items in the catalogue, the extra calls fall back to held-out items
    recent = pool.recent if len(pool.recent) else pool.items
    items = np.concatenate([rng.choice(pool.items, similar), rng.choice(recent, extra)])
    calls = [Call("recommend", {"user_id": int(u), "k": K}) for u in users]
    calls += [Call("similar_items", {"item_id": int(i), "k": K}) for i in items]
    return [calls[i] for i in rng.permutation(len(calls))]


def load() -> RecommendPool:
    """Recommend's pool, from its held-out and training ratings and the catalogue."""
    folder = config.PREPARED_DIR
    splits = [folder / name for name in ("test.csv", "fit.csv", "validation.csv")]
    items = config.RAW_DIR / data.ITEMS_FILE
    require(*splits, items)
    test, fit, validation = (data.read_ratings(path) for path in splits)
    if test.empty:
        raise StageError(f"{splits[0]} holds no ratings: run `make run`")
    return recommend_pool(test, pd.concat([fit, validation]), data.read_items(items))


def send(service: Service, calls: Sequence[Call]) -> Counter[str]:
    """Send each call; count the lists served, cold starts and unknown items."""
    stats = counts(
        "predictions", "recommend", "cold start", "similar_items", "unknown items skipped"
    )
    for call in calls:
        answer = service.post(call.route, call.body, missing_ok=True)
        if answer is None:
            stats["unknown items skipped"] += 1
            continue
        stats["predictions"] += 1
        stats[call.route] += 1
        stats["cold start"] += bool(answer.get("cold_start"))
    return stats


def window(pool: RecommendPool, service: Service, window: Window) -> Counter[str]:
    """Send one window of recommend traffic (it has no labels to deliver)."""
    return send(service, recommend_requests(pool, window.n, window.s, window.rng))


# --- a day of logged requests without a service (bench/monitoring_speed.py) ---------------


def _popular_lists(n: int, popularity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`n` lists of `K` distinct catalogue positions, each drawn in proportion to popularity
    (Gumbel top-k, in chunks so that the noise matrix stays small)."""
    weights = np.log(np.maximum(popularity, 1e-9))
    lists = []
    for start in range(0, n, 5000):
        rows = min(5000, n - start)
        keys = weights + rng.gumbel(size=(rows, len(weights)))
        lists.append(np.argpartition(-keys, K, axis=1)[:, :K])
    return np.concatenate(lists) if lists else np.empty((0, K), dtype=int)


def logged_records(
    n: int, reference: pd.DataFrame, context: dict[str, Any], rng: np.random.Generator
) -> tuple[list[dict[str, Any]], None]:
    """`/recommend` and `/similar_items` records in the reference's mix of the two."""
    ratings = pd.read_csv(config.PREPARED_DIR / "test.csv")
    users, items = ratings["user_id"].unique(), ratings["item_id"].unique()
    similar_share = float((reference["route"] == "similar_items").mean())
    ids = np.array([int(i) for i in context["popularity"]])
    popularity = np.array(list(context["popularity"].values()), dtype=float)
    served = ids[_popular_lists(n, popularity, rng)].tolist()
    similar = rng.random(n) < similar_share
    asked_user, asked_item = rng.choice(users, n).tolist(), rng.choice(items, n).tolist()
    records = logged_rows(n, str(context["champion_version"]), rng)
    for i, record in enumerate(records):
        if similar[i]:
            record |= {"route": "similar_items", "item_id": asked_item[i], "k": K}
        else:
            record |= {"route": "recommend", "user_id": asked_user[i], "k": K, "cold_start": False}
        record["item_ids"] = served[i]
    return records, None
