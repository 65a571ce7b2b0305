"""Behaviour of the recommender fitted on the real MovieLens-100K training split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from projects.recommend import config
from projects.recommend.data import ITEMS_FILE, RATINGS_FILE, read_atomic, read_items
from projects.recommend.model import (
    Hyperparameters,
    Recommender,
    UnknownItemError,
    fit,
)
from projects.recommend.prepare import split

HP = Hyperparameters(l2=500.0, filter_rank=32, filter_weight=0.5, blend=0.5)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training ratings (fit + validation) and the items, split as the pipeline does."""
    path = config.RAW_DIR / RATINGS_FILE
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (make test does) first")
    p = config.load().prepare
    fit_part, validation, _ = split(read_atomic(path), p.test_size, p.validation_size, p.seed)
    return pd.concat([fit_part, validation]), read_items(config.RAW_DIR / ITEMS_FILE)


@pytest.fixture(scope="module")
def recommender(data) -> Recommender:
    return fit(*data, HP)


def test_seen_items_are_never_recommended(recommender, data) -> None:
    train, _ = data
    for user in train.user_id.unique()[:50]:
        seen = set(train.item_id[train.user_id == user])
        listed = [item.item_id for item in recommender.recommend(int(user), 100).items]
        assert len(listed) == 100 and not seen & set(listed)
        everything = recommender.recommend(int(user), 100, exclude_seen=False).items
        assert seen & {item.item_id for item in everything}  # the user's favourites come back


def test_lists_are_ranked_best_first_with_titles(recommender) -> None:
    found = recommender.recommend(1, 10)
    assert not found.cold_start and found.user_id == 1
    scores = [item.score for item in found.items]
    assert scores == sorted(scores, reverse=True)
    assert all(item.title for item in found.items)
    assert recommender.recommend(1, 3).items == found.items[:3]


def test_an_unknown_user_gets_the_popular_items(recommender, data) -> None:
    train, _ = data
    found = recommender.recommend(10_000, 5)
    assert found.cold_start
    most_rated = train.item_id.value_counts().index[:5].tolist()
    assert [item.item_id for item in found.items] == most_rated
    assert found.items[0].title == "Star Wars (1977)"


def test_similar_items_of_a_movie_are_other_movies(recommender) -> None:
    similar = recommender.similar_items(1, 10)  # Toy Story
    assert len(similar) == 10 and 1 not in [item.item_id for item in similar]
    sequel_family = {item.item_id for item in recommender.similar_items(172, 5)}
    assert 181 in sequel_family or 50 in sequel_family  # Empire Strikes Back -> Jedi or Star Wars


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.recommend(1, 0), "k must be between 1 and 1682"),
        (lambda r: r.recommend(1, -3), "k must be between 1 and 1682"),
        (lambda r: r.recommend(1, 1683), "k must be between 1 and 1682"),
        (lambda r: r.recommend(1, 2.5), "k must be an integer"),
        (lambda r: r.recommend("one", 10), "user_id must be an integer"),
        (lambda r: r.similar_items(1, 0), "k must be between 1 and 1682"),
        (lambda r: r.similar_items(99_999, 5), "item_id 99999 is not in the catalogue"),
    ],
)
def test_bad_arguments_are_value_errors_with_a_message(recommender, call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call(recommender)


def test_an_unknown_item_is_its_own_error(recommender) -> None:
    with pytest.raises(UnknownItemError):
        recommender.similar_items(99_999)


def test_the_whole_catalogue_can_be_asked_for(recommender) -> None:
    found = recommender.recommend(1, recommender.n_items)  # more than are unseen: all unseen
    assert len(found.items) == recommender.n_items - int(recommender.seen[0].sum())


def test_fitting_is_deterministic(recommender, data) -> None:
    again = fit(*data, HP)
    np.testing.assert_array_equal(again.weights, recommender.weights)
    np.testing.assert_array_equal(again.top, recommender.top)


def test_a_saved_model_loads_with_the_same_answers(recommender, tmp_path) -> None:
    recommender.save(tmp_path / "model.npz")
    loaded = Recommender.load(tmp_path / "model.npz")
    assert loaded.recommend(1, 10) == recommender.recommend(1, 10)
    assert loaded.recommend(10_000, 10) == recommender.recommend(10_000, 10)
    assert loaded.similar_items(50, 10) == recommender.similar_items(50, 10)
