"""`POST /analyze` of the request pattern analyzer service."""

from __future__ import annotations

import datetime as dt

import pytest

from services.traffic import EXAMPLE_LINES, EXAMPLE_REQUESTS

pytestmark = pytest.mark.service

# the example's attack: a SQL injection in the `page` parameter, its fifth request
ATTACK = 4
NOT_A_LOG_LINE = len(EXAMPLE_LINES)  # its last line, counted from 1
_LINE = '192.0.2.1 - - [11/Mar/2024:10:15:32 +0000] "{request}" 200 {size} "-" "curl/8.4.0"'
GOOD = _LINE.format(request="GET / HTTP/1.1", size=1)


def test_lines_get_a_verdict_per_request_and_per_client_session(services) -> None:
    answer = services["traffic"].post("/analyze", {"lines": EXAMPLE_LINES})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    requests, clients = body["requests"], body["clients"]
    assert [r["line"] for r in requests] == list(range(1, len(EXAMPLE_LINES)))
    assert requests[2]["path"] == "/api/v1/products/1042"
    assert requests[2]["endpoint"] == "GET /api/v1/products/{id}"
    assert all(r["score"] < r["threshold"] and not r["flagged"] for r in requests[:ATTACK])
    assert {(c["client_ip"], c["requests"]) for c in clients} == {
        ("203.0.113.7", 4),
        ("198.51.100.23", 1),
    }
    visitor = next(c for c in clients if c["client_ip"] == "203.0.113.7")
    assert dt.datetime.fromisoformat(visitor["start"]) == dt.datetime(
        2024, 3, 11, 10, 15, 32, tzinfo=dt.UTC
    )
    assert dt.datetime.fromisoformat(visitor["end"]) == dt.datetime(
        2024, 3, 11, 10, 16, 3, tzinfo=dt.UTC
    )
    assert body["parsing"]["lines"] == len(EXAMPLE_LINES)
    assert body["parsing"]["parsed"] == len(EXAMPLE_LINES) - 1
    (unparsed,) = body["parsing"]["unparsed_lines"]
    assert unparsed["line"] == NOT_A_LOG_LINE and unparsed["reason"]


def test_a_payload_is_flagged_with_reasons_naming_the_parameter(services) -> None:
    answer = services["traffic"].post("/analyze", {"lines": EXAMPLE_LINES})
    attack = answer.json()["requests"][ATTACK]
    assert attack["client_ip"] == "198.51.100.23"
    assert attack["flagged"] and attack["score"] > attack["threshold"]
    assert attack["reasons"] and attack["reasons"][0].startswith("page:")
    attacker = next(c for c in answer.json()["clients"] if c["client_ip"] == "198.51.100.23")
    assert attacker["flagged"] and attacker["reasons"]
    # without explanations: the same flag, no reasons
    quiet = services["traffic"].post("/analyze", {"lines": EXAMPLE_LINES, "explain": False})
    assert quiet.json()["requests"][ATTACK]["flagged"]
    assert all(v["reasons"] == [] for v in quiet.json()["requests"] + quiet.json()["clients"])


def test_an_over_long_value_is_analysed_and_flagged_not_refused(services) -> None:
    line = _LINE.format(request=f"GET /api/v1/search?q={'A' * 20_000}&limit=20 HTTP/1.1", size=0)
    answer = services["traffic"].post("/analyze", {"lines": [line]})
    assert answer.status_code == 200, answer.text
    (verdict,) = answer.json()["requests"]
    assert verdict["flagged"] and verdict["reasons"][0].startswith("q:")


def test_structured_requests_get_the_verdicts_of_their_lines(services) -> None:
    service = services["traffic"]
    from_lines = service.post("/analyze", {"lines": EXAMPLE_LINES}).json()
    answer = service.post("/analyze", {"requests": EXAMPLE_REQUESTS})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["line"] for r in body["requests"]] == list(range(1, len(EXAMPLE_REQUESTS) + 1))
    for key in ("endpoint", "flagged", "reasons"):
        assert [r[key] for r in body["requests"]] == [r[key] for r in from_lines["requests"]]
    assert [r["score"] for r in body["requests"]] == pytest.approx(
        [r["score"] for r in from_lines["requests"]]
    )
    assert body["clients"] == from_lines["clients"]
    assert body["parsing"] == {
        "lines": len(EXAMPLE_REQUESTS),
        "parsed": len(EXAMPLE_REQUESTS),
        "unparsed": 0,
        "unparsed_lines": [],
    }


def test_structured_requests_need_only_an_address_a_time_and_a_path(services) -> None:
    one = {"client_ip": "192.0.2.1", "time": 1710152132.5, "path": "/api/v1/cart"}
    answer = services["traffic"].post("/analyze", {"requests": [one]})
    assert answer.status_code == 200, answer.text
    (verdict,) = answer.json()["requests"]
    assert verdict["method"] == "GET" and verdict["endpoint"] == "GET /api/v1/cart"


def test_unparsed_lines_are_counted_and_the_first_20_named(services) -> None:
    lines = [EXAMPLE_LINES[0], "", *(f"junk {i}" for i in range(25))]
    answer = services["traffic"].post("/analyze", {"lines": lines})
    assert answer.status_code == 200, answer.text
    parsing = answer.json()["parsing"]
    # the blank line is neither counted nor named, but it keeps its place in the numbering
    assert (parsing["lines"], parsing["parsed"], parsing["unparsed"]) == (26, 1, 25)
    assert [u["line"] for u in parsing["unparsed_lines"]] == list(range(3, 23))


def test_a_batch_without_any_access_log_line_is_answered_with_the_reasons(services) -> None:
    # valid by the schema, so accepted: nothing is analysed, and `parsing` says why
    lines = ["garbage", '{"time": "2024-03-11T10:15:32Z", "path": "/"}']
    answer = services["traffic"].post("/analyze", {"lines": lines})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["requests"] == [] and body["clients"] == []
    assert (body["parsing"]["lines"], body["parsing"]["parsed"]) == (2, 0)
    reasons = [u["reason"] for u in body["parsing"]["unparsed_lines"]]
    assert reasons[0].startswith("too few fields") and reasons[1].startswith("another format")


def test_a_field_sent_as_null_is_refused_as_the_schema_says(services) -> None:
    answer = services["traffic"].post("/analyze", {"lines": ["x"], "requests": None})
    assert answer.status_code == 400
    assert "requests: null is not a list" in answer.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("lines", "parsed"),
    [
        pytest.param([GOOD, "\x00\x01\xff"], 1, id="binary"),
        pytest.param([_LINE.format(request="\\x16\\x03\\x01", size=0)], 1, id="tls-handshake"),
        pytest.param([_LINE.format(request="GET /a b HTTP/1.1", size=1)], 1, id="raw-spaces"),
        pytest.param([GOOD.replace("2024", "1969"), GOOD], 1, id="before-1970"),
        pytest.param([GOOD.replace("2024", "0001").replace("+0000", "+1400"), GOOD], 1,
                     id="before-year-1"),
        # a byte count beyond int64 is not one a server wrote: named as unparsed
        pytest.param([_LINE.format(request="GET / HTTP/1.1", size=9 * 10**30), GOOD], 1,
                     id="huge-byte-count"),
        pytest.param([f'{GOOD} "{"[" * 5000}{"]" * 5000}"'], 1, id="json-bomb"),
    ],
)  # fmt: skip
def test_odd_lines_are_analysed_or_named_never_a_5xx(services, lines, parsed) -> None:
    answer = services["traffic"].post("/analyze", {"lines": lines})
    assert answer.status_code == 200, answer.text
    counts = answer.json()["parsing"]
    assert (counts["parsed"], counts["unparsed"]) == (parsed, len(lines) - parsed)


REQUEST = {"client_ip": "192.0.2.1", "time": "2024-03-11T10:15:32Z", "path": "/"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, ["requests"]),
        ({"explain": True}, ["requests"]),
        ({"lines": EXAMPLE_LINES, "requests": EXAMPLE_REQUESTS}, ["requests"]),
        ({"lines": []}, ["lines"]),
        ({"lines": ["x" * 65_537]}, ["lines", 0]),
        ({"lines": ["x"] * 10_001}, ["lines"]),
        ({"lines": "one line"}, ["lines"]),
        ({"lines": [1]}, ["lines", 0]),
        ({"lines": ["x"], "explain": "maybe"}, ["explain"]),
        ({"requests": []}, ["requests"]),
        ({"requests": [REQUEST | {"client_ip": ""}]}, ["requests", 0, "client_ip"]),
        ({"requests": [{"time": 1, "path": "/"}]}, ["requests", 0, "client_ip"]),
        ({"requests": [REQUEST | {"time": "yesterday"}]}, ["requests", 0, "time"]),
        ({"requests": [REQUEST | {"time": -1}]}, ["requests", 0, "time"]),
        ({"requests": [REQUEST | {"path": "/a?b=1"}]}, ["requests", 0, "path"]),
        ({"requests": [REQUEST | {"query": "?b=1"}]}, ["requests", 0, "query"]),
        ({"requests": [REQUEST | {"status": "200"}]}, ["requests", 0, "status"]),
        ({"requests": [REQUEST | {"status": 700}]}, ["requests", 0, "status"]),
        ({"requests": [REQUEST | {"body": "x" * 65_537}]}, ["requests", 0, "body"]),
        ({"requests": [REQUEST | {"stauts": 200}]}, ["requests", 0, "stauts"]),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_field(services, body, field) -> None:
    answer = services["traffic"].post("/analyze", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"][0]["loc"] == field


def test_the_request_log_gets_one_record_per_analysed_request(services) -> None:
    service = services["traffic"]
    before = service.settled()
    answer = service.post("/analyze", {"lines": EXAMPLE_LINES}).json()
    assert service.post("/analyze", {"lines": []}).status_code == 400  # no analysis, no record
    verdicts = answer["requests"]
    records = service.records_after(before, expected=len(verdicts))
    assert [r["prediction_id"] for r in records] == [v["prediction_id"] for v in verdicts]
    assert len({r["request_id"] for r in records}) == 1
    assert all(r["route"] == "analyze" for r in records)
    assert [r["score"] for r in records] == [v["score"] for v in verdicts]
    assert [r["flagged"] for r in records] == [v["flagged"] for v in verdicts]
    assert [r["endpoint"] for r in records] == [v["endpoint"] for v in verdicts]
    assert [r["status"] for r in records] == [200, 200, 200, 201, 200]
    assert [r["method"] for r in records] == ["GET", "GET", "GET", "POST", "GET"]
    # category, page, per_page; q, limit; none; product_id, quantity (the JSON body); three
    assert [r["n_params"] for r in records] == [3, 2, 0, 2, 3]
    assert [r["body_length"] for r in records] == [0, 0, 0, 32, 0]
    assert records[0]["query_length"] == len("category=books&page=2&per_page=24")
