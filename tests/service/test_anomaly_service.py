"""`POST /score` and `POST /score_lines` of the log anomaly service."""

from __future__ import annotations

import pytest

from projects.anomaly.data import LOG_FILE, read_lines

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def lines(repo) -> list[str]:
    """The first lines of the copy's HDFS log: whole sessions for some blocks."""
    root, _ = repo
    return read_lines(root / "data" / "raw" / "anomaly" / LOG_FILE)[:400]


def test_sessions_get_a_score_a_threshold_and_a_verdict(services) -> None:
    normal = ["E1", "E2", "E2", "E2", "E3", "E3", "E3", "E4", "E4", "E4", "E5", "E5", "E5"]
    body = {"sessions": [{"block_id": "blk_1", "events": normal},
                         {"block_id": "blk_2", "events": ["E1", "E2", "E999"]}]}  # fmt: skip
    answer = services["anomaly"].post("/score", body)
    assert answer.status_code == 200
    first, second = answer.json()["sessions"]
    assert first["block_id"] == "blk_1" and first["n_events"] == len(normal)
    assert first["score"] < first["threshold"] and not first["is_anomaly"]
    assert second["unknown_events"] == 1 and second["is_anomaly"]


def test_explain_names_the_events_behind_a_score(services) -> None:
    body = {"sessions": [{"block_id": "b", "events": ["E1", "E2", "E999"]}], "explain": True}
    shares = services["anomaly"].post("/score", body).json()["sessions"][0]["explanation"]
    assert shares[0]["event"] == "E0" and shares[0]["template"] == "(unknown event)"
    assert all(0 <= s["share"] <= 1 for s in shares)


def test_raw_lines_are_parsed_grouped_and_scored_like_sessions(services, lines) -> None:
    service = services["anomaly"]
    before = service.settled()
    answer = service.post("/score_lines", {"lines": [*lines, "not a log line"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["parsed"]["lines"] == len(lines) + 1 and body["parsed"]["malformed"] == 1
    assert body["sessions"] and all(s["block_id"].startswith("blk_") for s in body["sessions"])
    # the logged events of each block, sent back as a session, score the same
    records = service.records_after(before, expected=len(body["sessions"]))
    sessions = [{"block_id": r["block_id"], "events": r["events"].split()} for r in records]
    again = service.post("/score", {"sessions": sessions}).json()["sessions"]
    assert [s["score"] for s in again] == pytest.approx([s["score"] for s in body["sessions"]])


def test_lines_without_any_block_are_answered_with_the_counts(services) -> None:
    # valid by the schema, so accepted: nothing is scored, and the counts say why
    answer = services["anomaly"].post("/score_lines", {"lines": ["garbage", "more garbage"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessions"] == []
    assert answer.json()["parsed"] == {"lines": 2, "malformed": 2, "unknown": 0, "without_block": 0}


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/score", {"sessions": []}, ["sessions"]),
        ("/score", {"sessions": [{"block_id": "b", "events": []}]}, ["sessions", 0, "events"]),
        ("/score", {"sessions": [{"block_id": "b", "events": ["x"]}]},
         ["sessions", 0, "events", 0]),
        ("/score", {"sessions": [{"events": ["E1"]}]}, ["sessions", 0, "block_id"]),
        ("/score_lines", {"lines": []}, ["lines"]),
        ("/score_lines", {"lines": ["x" * 10_001]}, ["lines", 0]),
    ],
)  # fmt: skip
def test_bad_sessions_are_refused_naming_the_field(services, route, body, field) -> None:
    answer = services["anomaly"].post(route, body)
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["loc"] == field


def test_the_request_log_gets_one_record_per_session(services) -> None:
    service = services["anomaly"]
    before = service.settled()
    body = {"sessions": [{"block_id": "blk_7", "events": ["E1", "E2"]},
                         {"block_id": "blk_8", "events": ["E1", "E42"]}]}  # fmt: skip
    verdicts = service.post("/score", body).json()["sessions"]
    records = service.records_after(before, expected=2)
    assert [r["block_id"] for r in records] == ["blk_7", "blk_8"]
    assert [r["events"] for r in records] == ["E1 E2", "E1 E42"]
    assert [r["score"] for r in records] == [v["score"] for v in verdicts]
    assert records[1]["unknown_events"] == 1 and records[0]["n_events"] == 2
