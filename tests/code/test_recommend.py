"""The recommend project's pure functions: reading, splitting, ranking metrics, top-k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from projects.recommend.data import read_atomic, read_items
from projects.recommend.metrics import coverage, precision_curve, ranking_metrics
from projects.recommend.model import candidates, interactions, top_k
from projects.recommend.prepare import split, split_per_user


def _pairs(ratings: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(ratings.user_id, ratings.item_id, strict=True))


def _ratings(counts: dict[int, int]) -> pd.DataFrame:
    rows = [(user, item, 1 + item % 5, 880000000 + item) for user, n in counts.items()
            for item in range(1, n + 1)]  # fmt: skip
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_atomic_headers_lose_their_types(tmp_path) -> None:
    path = tmp_path / "x.item"
    path.write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Comedy\n267\tunkonwn\tunkonwn\tunknown\n2\tNA\t1995\t\n"
    )
    assert list(read_atomic(path).columns) == ["item_id", "movie_title", "release_year", "class"]
    items = read_items(path)
    assert list(items.columns) == ["item_id", "title", "year", "genres"]
    assert items.title.tolist() == ["Toy Story", "unkonwn", "NA"]  # "NA" is a title, not null
    assert items.year.tolist()[0] == 1995 and pd.isna(items.year[1])


@pytest.mark.parametrize("held_out", [0.25, 0.5, 0.9])
def test_split_per_user_keeps_every_user_and_each_share(held_out: float) -> None:
    ratings = _ratings({1: 20, 2: 7, 3: 1, 4: 2, 5: 100})
    kept, out = split_per_user(ratings, held_out, seed=3)
    assert set(kept.user_id) == set(ratings.user_id)  # every user keeps a rating
    assert len(kept) + len(out) == len(ratings)
    assert not _pairs(kept) & _pairs(out)
    for user, n in ratings.user_id.value_counts().items():
        assert (out.user_id == user).sum() == n - max(round(n * (1 - held_out)), 1)


def test_split_is_seeded_and_gives_disjoint_fit_validation_test() -> None:
    ratings = _ratings({1: 40, 2: 30, 3: 25})
    fit, validation, test = split(ratings, 0.25, 0.25, seed=0)
    again = split(ratings, 0.25, 0.25, seed=0)
    for part, same in zip((fit, validation, test), again, strict=True):
        pd.testing.assert_frame_equal(part, same)
    assert not split(ratings, 0.25, 0.25, seed=1)[2].equals(test)
    pairs = [_pairs(part) for part in (fit, validation, test)]
    assert sum(map(len, pairs)) == len(ratings) == len(set().union(*pairs))
    assert set(validation.user_id) <= set(fit.user_id) and set(test.user_id) <= set(fit.user_id)


def test_split_of_nothing_is_nothing() -> None:
    empty = _ratings({})
    assert all(part.empty for part in split(empty, 0.25, 0.25, seed=0))


def _relevant(rows: list[list[int]], n_items: int = 10) -> sparse.csr_matrix:
    matrix = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        matrix[user, items] = 1
    return sparse.csr_matrix(matrix)


def test_ranking_metrics_on_hand_made_lists() -> None:
    ranked = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    # user 0: hits at ranks 1 and 3 of 2 relevant; user 1: nothing; user 2: no held-out items
    relevant = _relevant([[0, 2], [9], []])
    got = ranking_metrics(ranked, relevant, k=3)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3)
    assert got == pytest.approx(
        {
            "precision_at_3": (2 / 3 + 0) / 2,
            "recall_at_3": (1 + 0) / 2,
            "ndcg_at_3": (dcg / idcg + 0) / 2,
            "map_at_3": ((1 / 1 + 2 / 3) / 2 + 0) / 2,
        }
    )


def test_perfect_lists_score_one_and_coverage_counts_distinct_items() -> None:
    ranked = np.array([[1, 2], [2, 1]])
    got = ranking_metrics(ranked, _relevant([[1, 2], [1, 2, 3]]), k=2)
    assert got["ndcg_at_2"] == pytest.approx(1.0)
    assert got["map_at_2"] == pytest.approx(1.0)
    assert got["recall_at_2"] == pytest.approx((1 + 2 / 3) / 2)
    assert coverage(ranked, n_items=10, k=2) == pytest.approx(0.2)
    assert precision_curve(ranked, _relevant([[1], [1]]), 2).tolist() == pytest.approx([0.5, 0.5])


def test_top_k_skips_seen_items_and_ranks_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    seen = sparse.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]]))
    assert top_k(scores, seen, 2).tolist() == [[3, 2], [0, 1]]
    assert top_k(scores, None, 10).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]


def test_interactions_are_binary_and_follow_the_given_ids() -> None:
    ratings = pd.DataFrame({"user_id": [7, 7, 9, 8], "item_id": [2, 2, 3, 99]})
    matrix = interactions(ratings, np.array([7, 9]), np.array([3, 2]))
    assert matrix.toarray().tolist() == [[0, 1], [1, 0]]  # duplicates count once; 8 and 99 unknown


def test_plain_ease_is_tried_once_per_l2() -> None:
    points = list(candidates([1.0, 2.0], [8, 16], [0.3], [0.0, 0.5]))
    assert [(p.l2, p.filter_rank, p.blend) for p in points] == [
        (1.0, 8, 0.0), (1.0, 8, 0.5), (1.0, 16, 0.5), (2.0, 8, 0.0), (2.0, 8, 0.5), (2.0, 16, 0.5)
    ]  # fmt: skip
