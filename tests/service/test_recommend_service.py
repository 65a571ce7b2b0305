"""`POST /recommend` and `POST /similar_items` of the recommender service."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.service


def test_a_known_user_gets_k_titled_items(services) -> None:
    answer = services["recommend"].post("/recommend", {"user_id": 1, "k": 5})
    assert answer.status_code == 200
    body = answer.json()
    assert body["user_id"] == 1 and body["cold_start"] is False
    assert len(body["items"]) == 5
    assert all(item["title"] and isinstance(item["item_id"], int) for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_k_defaults_to_ten_and_an_unknown_user_gets_cold_start(services) -> None:
    answer = services["recommend"].post("/recommend", {"user_id": 10**6})
    assert answer.status_code == 200
    assert answer.json()["cold_start"] is True
    assert len(answer.json()["items"]) == 10


def test_similar_items_never_include_the_item(services) -> None:
    answer = services["recommend"].post("/similar_items", {"item_id": 50, "k": 3})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert len(items) == 3 and 50 not in [i["item_id"] for i in items]


def test_an_unknown_item_is_a_404_with_a_message(services) -> None:
    answer = services["recommend"].post("/similar_items", {"item_id": 99_999, "k": 3})
    assert answer.status_code == 404
    assert "99999" in answer.json()["error"]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/recommend", {"user_id": 1, "k": 0}, "k"),
        ("/recommend", {"user_id": 1, "k": 101}, "k"),
        ("/recommend", {"user_id": "1"}, "user_id"),
        ("/recommend", {"user_id": 1.5}, "user_id"),
        ("/recommend", {"k": 3}, "user_id"),
        ("/similar_items", {"item_id": 50, "k": 1000}, "k"),
        ("/similar_items", {"item_id": None}, "item_id"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(services, route, body, field) -> None:
    answer = services["recommend"].post(route, body)
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["loc"] == [field]


def test_the_request_log_gets_one_record_per_list(services) -> None:
    service = services["recommend"]
    before = service.settled()
    served = service.post("/recommend", {"user_id": 2, "k": 4}).json()
    assert service.post("/similar_items", {"item_id": 99_999}).status_code == 404
    service.post("/similar_items", {"item_id": 1, "k": 2})
    first, second = service.records_after(before, expected=2)
    assert first["route"] == "recommend" and first["user_id"] == 2 and first["k"] == 4
    assert first["item_ids"] == [item["item_id"] for item in served["items"]]
    assert first["cold_start"] is False
    assert second["route"] == "similar_items" and second["item_id"] == 1
