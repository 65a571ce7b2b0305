"""The recommender: one item-item matrix, learned in closed form, and exact top-k lists.

The matrix blends two models that both score a user as `history @ matrix`:
- EASE (Steck 2019): a ridge regression of each item on all the others, with a zero diagonal.
- A graph filter (GF-CF, Shen et al. 2021): normalised item co-occurrence plus an ideal low-pass
  filter made of the top singular vectors of the normalised interaction matrix.

Each part is scaled by the spread of the scores it gives, then mixed with the share `blend`
(0 is plain EASE). Because a known user's scores are one row of a matrix product, every user's
list is computed when the model is built or loaded, and answering is a lookup. Unknown users get
the popularity ranking, which is also the baseline the model is compared with.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

# Lists this long are precomputed for every user (the service's largest k); longer ones, and
# lists that keep seen items, are ranked on demand.
PRECOMPUTED = 100


@dataclass(frozen=True)
class Hyperparameters:
    """One point of the search: EASE's L2 penalty, the graph filter's rank and weight, the blend."""

    l2: float
    filter_rank: int
    filter_weight: float
    blend: float


def candidates(
    l2: Sequence[float], rank: Sequence[int], weight: Sequence[float], blend: Sequence[float]
) -> Iterator[Hyperparameters]:
    """Every combination of the grids, except that plain EASE (blend 0) is tried once per L2."""
    for l2_, rank_, weight_, blend_ in itertools.product(l2, rank, weight, blend):
        if blend_ == 0 and (rank_, weight_) != (rank[0], weight[0]):
            continue  # the graph filter's settings do not matter when it has no share
        yield Hyperparameters(l2_, rank_, weight_, blend_)


def interactions(
    ratings: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray
) -> sparse.csr_matrix:
    """The binary users x items matrix of `ratings`; rows follow `user_ids`, columns `item_ids`.

    Ratings of users or items outside those lists are left out.
    """
    rows = pd.Index(user_ids).get_indexer(ratings["user_id"])
    cols = pd.Index(item_ids).get_indexer(ratings["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    matrix = sparse.csr_matrix(
        (np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(len(user_ids), len(item_ids))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def ease(history: sparse.csr_matrix, l2: float) -> np.ndarray:
    """EASE's item-item matrix: B = I - P / diag(P) with P = (X'X + l2 I)^-1, diagonal zero."""
    gram = (history.T @ history).toarray()
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights


class GraphFilter:
    """GF-CF's item-item matrices for one interaction matrix, for any rank up to `max_rank`.

    The normalised co-occurrence R'R and the singular vectors of R (R = Du^-1/2 X Di^-1/2) are
    computed once, so a search over ranks and weights costs one SVD.
    """

    def __init__(self, history: sparse.csr_matrix, max_rank: int) -> None:
        user_degree = np.asarray(history.sum(axis=1)).ravel()
        item_degree = np.asarray(history.sum(axis=0)).ravel()
        self._item_scale = 1 / np.sqrt(np.maximum(item_degree, 1))
        normalised = sparse.diags(1 / np.sqrt(np.maximum(user_degree, 1))) @ history
        normalised = normalised @ sparse.diags(self._item_scale)
        self._cooccurrence = (normalised.T @ normalised).toarray()
        # a dense SVD: exact and deterministic, and quick at this size
        _, _, vt = np.linalg.svd(normalised.toarray(), full_matrices=False)
        self._vt = vt[:max_rank]

    def matrix(self, rank: int, weight: float) -> np.ndarray:
        """R'R + weight * Di^-1/2 V V' Di^1/2, with V the top `rank` right singular vectors."""
        v = self._vt[:rank]
        ideal = (self._item_scale[:, None] * v.T) @ (v / self._item_scale[None, :])
        return self._cooccurrence + weight * ideal


def blend(
    history: sparse.csr_matrix, ease_matrix: np.ndarray, graph_matrix: np.ndarray, share: float
) -> np.ndarray:
    """Mix two item-item matrices, each divided by the spread of the scores it gives `history`."""
    parts = [(1 - share, ease_matrix), (share, graph_matrix)]
    mixed = np.zeros_like(ease_matrix)
    for weight, matrix in parts:
        if weight > 0:
            mixed += weight * matrix / np.std(history @ matrix)
    return mixed


def item_item(history: sparse.csr_matrix, hp: Hyperparameters) -> np.ndarray:
    """The blended item-item matrix for one point of the search."""
    graph = GraphFilter(history, hp.filter_rank).matrix(hp.filter_rank, hp.filter_weight)
    return blend(history, ease(history, hp.l2), graph, hp.blend)


def top_k(scores: np.ndarray, seen: sparse.csr_matrix | None, k: int) -> np.ndarray:
    """Indices of each row's `k` best columns, best first, never a column `seen` marks.

    A row with fewer than `k` unseen columns ends in seen ones.
    """
    masked = np.array(scores, dtype=np.float32)  # a copy
    if seen is not None:
        rows, cols = seen.nonzero()
        masked[rows, cols] = -np.inf
    k = min(k, masked.shape[1])
    best = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(masked, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


@dataclass(frozen=True, slots=True)
class Item:
    """One recommended item."""

    item_id: int
    title: str
    score: float


@dataclass(frozen=True, slots=True)
class Recommendations:
    """A user's list; `cold_start` says the user is unknown and the list is the popular items."""

    user_id: int
    cold_start: bool
    items: list[Item]


class UnknownItemError(ValueError):
    """An item id the model has never seen."""


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _count(value: object, largest: int) -> int:
    k = _integer("k", value)
    if not 1 <= k <= largest:
        raise ValueError(f"k must be between 1 and {largest} (the catalogue), got {k}")
    return k


class Recommender:
    """Top-k lists for known users, popularity for unknown ones, and similar items.

    Args:
        weights: the item-item matrix.
        seen: users x items, non-zero where the user rated the item in training.
        user_ids, item_ids: the ids behind the rows of `seen` and the columns of `weights`.
        titles: one per item.
        popularity: each item's share of users who rated it in training.
    """

    def __init__(
        self,
        weights: np.ndarray,
        seen: sparse.csr_matrix,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        titles: np.ndarray,
        popularity: np.ndarray,
    ) -> None:
        self.weights = np.asarray(weights, dtype=np.float32)
        self.seen = sparse.csr_matrix(seen, dtype=np.float32)
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.titles = np.asarray(titles, dtype=str)
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self._users = {int(user): row for row, user in enumerate(self.user_ids)}
        self._items = {int(item): col for col, item in enumerate(self.item_ids)}
        self._item_list = self.item_ids.tolist()
        self._title_list = self.titles.tolist()
        self._popular = np.argsort(-self.popularity, kind="stable")
        self.scores, self.top = self.precompute()

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def precompute(self) -> tuple[np.ndarray, np.ndarray]:
        """Every known user's scores, seen items at -inf, and their best `PRECOMPUTED` items."""
        scores = np.asarray(self.seen @ self.weights, dtype=np.float32)
        rows, cols = self.seen.nonzero()
        scores[rows, cols] = -np.inf
        return scores, top_k(scores, None, PRECOMPUTED)

    def _items_of(self, columns: np.ndarray, scores: np.ndarray) -> list[Item]:
        """The items at `columns` with their `scores`, leaving out any scored -inf (seen)."""
        return [
            Item(self._item_list[c], self._title_list[c], s)
            for c, s in zip(columns.tolist(), scores.tolist(), strict=True)
            if s != -np.inf
        ]

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> Recommendations:
        """The user's `k` best items; popular items, flagged `cold_start`, for an unknown user.

        A user who has seen nearly the whole catalogue may get fewer than `k` items.

        Raises:
            ValueError: `user_id` is not an integer, or `k` is not in 1..catalogue size.
        """
        k, user_id = _count(k, self.n_items), _integer("user_id", user_id)
        row = self._users.get(user_id)
        if row is None:
            scores, columns = self.popularity, self._popular[:k]
        elif not exclude_seen:
            scores = np.asarray(self.seen[row] @ self.weights)[0]
            columns = top_k(scores[None, :], None, k)[0]
        elif k <= PRECOMPUTED:
            scores, columns = self.scores[row], self.top[row, :k]  # seen items are at -inf
        else:
            scores = self.scores[row]
            columns = top_k(scores[None, :], None, k)[0]
        return Recommendations(user_id, row is None, self._items_of(columns, scores[columns]))

    def similar_items(self, item_id: int, k: int = 10) -> list[Item]:
        """The `k` items the model would recommend to someone who has rated only `item_id`.

        Raises:
            UnknownItemError: the item is not in the catalogue.
            ValueError: `item_id` is not an integer, or `k` is not in 1..catalogue size.
        """
        k, item_id = _count(k, self.n_items), _integer("item_id", item_id)
        col = self._items.get(item_id)
        if col is None:
            raise UnknownItemError(f"item_id {item_id} is not in the catalogue")
        scores = self.weights[col].copy()
        scores[col] = -np.inf  # never the item itself
        columns = top_k(scores[None, :], None, k)[0]
        return self._items_of(columns, scores[columns])

    def save(self, path: Path) -> None:
        """Write the model as one `.npz` of plain arrays (no pickle)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(
                f,
                weights=self.weights,
                seen_indptr=self.seen.indptr,
                seen_indices=self.seen.indices,
                user_ids=self.user_ids,
                item_ids=self.item_ids,
                titles=self.titles,
                popularity=self.popularity,
            )

    @classmethod
    def load(cls, path: Path) -> Recommender:
        """Read a model `save` wrote; no pickled objects are accepted."""
        with np.load(path, allow_pickle=False) as arrays:
            shape = (len(arrays["user_ids"]), len(arrays["item_ids"]))
            indices = arrays["seen_indices"]
            seen = sparse.csr_matrix(
                (np.ones(len(indices), dtype=np.float32), indices, arrays["seen_indptr"]),
                shape=shape,
            )
            return cls(
                arrays["weights"],
                seen,
                arrays["user_ids"],
                arrays["item_ids"],
                arrays["titles"],
                arrays["popularity"],
            )


def fit(train: pd.DataFrame, items: pd.DataFrame, hp: Hyperparameters) -> Recommender:
    """Fit the recommender on training ratings over the catalogue `items`."""
    user_ids = np.sort(train["user_id"].unique())
    item_ids = items["item_id"].to_numpy()
    history = interactions(train, user_ids, item_ids)
    popularity = np.asarray(history.sum(axis=0)).ravel() / len(user_ids)
    return Recommender(
        item_item(history, hp), history, user_ids, item_ids, display_titles(items), popularity
    )


def display_titles(items: pd.DataFrame) -> np.ndarray:
    """ "Title (year)" for each item, or the bare title where the year is unknown."""
    return np.array(
        [
            f"{title} ({int(year)})" if pd.notna(year) else str(title)
            for title, year in zip(items["title"], items["year"], strict=True)
        ]
    )
