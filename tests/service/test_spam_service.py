"""`POST /classify` of the spam service."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.service

SPAM = "WINNER!! You have won a £1000 cash prize. Call 09061701461 now to claim. T&C apply"
HAM = "Hey, are we still meeting for lunch tomorrow?"


def test_texts_get_a_label_and_a_probability_each_in_order(services) -> None:
    answer = services["spam"].post("/classify", {"texts": [SPAM, HAM]})
    assert answer.status_code == 200
    spam, ham = answer.json()["results"]
    assert spam["label"] == "spam" and spam["spam_probability"] > 0.5
    assert ham["label"] == "ham" and ham["spam_probability"] < 0.5
    assert spam["explanation"] is None


def test_explain_returns_the_tokens_that_pushed_toward_spam(services) -> None:
    answer = services["spam"].post("/classify", {"texts": [SPAM], "explain": True})
    tokens = answer.json()["results"][0]["explanation"]
    assert 1 <= len(tokens) <= 5
    assert tokens[0]["weight"] > 0
    assert all(t["token"] in SPAM.split() for t in tokens)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"texts": []}, ["texts"]),
        ({"texts": [""]}, ["texts", 0]),
        ({"texts": ["a" * 5001]}, ["texts", 0]),
        ({"texts": ["a"] * 1001}, ["texts"]),
        ({"texts": "just one string"}, ["texts"]),
        ({"texts": [1, 2]}, ["texts", 0]),
        ({"texts": ["a"], "explain": "maybe"}, ["explain"]),
    ],
)
def test_bad_texts_are_refused_naming_the_field(services, body, field) -> None:
    answer = services["spam"].post("/classify", body)
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["loc"] == field


def test_the_request_log_gets_one_record_per_text(services) -> None:
    service = services["spam"]
    before = service.settled()
    texts = [f"{HAM} {uuid.uuid4().hex}", f"{SPAM} {uuid.uuid4().hex}", HAM]
    assert service.post("/classify", {"texts": texts}).status_code == 200
    assert service.post("/classify", {"texts": []}).status_code == 400  # no prediction, no record
    records = service.records_after(before, expected=3)
    assert [r["text"] for r in records] == texts
    assert [r["label"] for r in records] == ["ham", "spam", "ham"]
    assert len({r["request_id"] for r in records}) == 1
    assert all(
        r["route"] == "classify" and r["model_version"] and r["latency_ms"] >= 0
        and r["text_length"] == len(r["text"]) and 0 <= r["spam_probability"] <= 1
        for r in records
    )  # fmt: skip
