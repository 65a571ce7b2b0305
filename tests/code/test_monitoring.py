"""Monitoring's parts without services: reading windows, bad input, features, judging."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring import window as w
from monitoring.metrics import quality
from monitoring.monitor import judge, last_time, load_reference, sample
from monitoring.specs import specs
from projects.anomaly.reference import session_features
from projects.core import reference as ref
from projects.core.reference import MonitorParams
from projects.recommend.reference import served_measures
from projects.spam.reference import SCHEMA as SPAM
from projects.spam.reference import text_features

PARAMS = MonitorParams(sample_size=1000, column_threshold=0.1, drift_share=0.5)


def record(i: int, route: str = "classify", **fields) -> dict:
    return {"timestamp": "2026-11-21T10:00:00.000+00:00", "route": route,
            "prediction_id": f"r{i}-0", "text": f"text {i}", "label": "ham",
            "spam_probability": 0.1, **fields}  # fmt: skip


def write_log(directory: Path, lines: list[str], name: str = "2026-11-21.jsonl") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with path.open("a") as f:
        f.write("".join(lines))
    return path


def lines_of(records: list[dict]) -> list[str]:
    return [json.dumps(r) + "\n" for r in records]


def test_a_window_is_what_came_since_the_cursor_and_a_partial_last_line_waits(tmp_path) -> None:
    path = write_log(tmp_path, lines_of([record(0), record(1)]))
    first = w.read_window(tmp_path, {}, ("classify",), skip_bad=False)
    assert first.records["prediction_id"].tolist() == ["r0-0", "r1-0"]
    write_log(tmp_path, [*lines_of([record(2)]), json.dumps(record(3))[:20]])  # being written
    second = w.read_window(tmp_path, first.cursor, ("classify",), skip_bad=False)
    assert second.records["prediction_id"].tolist() == ["r2-0"]
    assert second.cursor[path.name].line == 3
    with pytest.raises(w.EmptyWindowError, match="no new classify requests"):
        w.read_window(tmp_path, second.cursor, ("classify",), skip_bad=False)


def test_the_cursor_survives_a_round_trip(tmp_path) -> None:
    cursor = {"2026-11-21.jsonl": w.Position(120, 3)}
    w.write_cursor(tmp_path, cursor)
    assert w.read_cursor(tmp_path) == cursor
    assert w.read_cursor(tmp_path / "none") == {}


def test_corrupt_and_truncated_lines_are_named_and_the_log_is_left_alone(tmp_path) -> None:
    good = lines_of([record(0)])
    path = write_log(tmp_path, [*good, "garbage\n", json.dumps(record(1))[:30] + "\n", *good])
    before = path.read_bytes()
    with pytest.raises(w.CorruptLogError) as caught:
        w.read_window(tmp_path, {}, ("classify",), skip_bad=False)
    message = str(caught.value)
    assert "2 line(s)" in message
    assert f"{path.name}:2: not a JSON object" in message
    assert f"{path.name}:3: truncated" in message
    assert caught.value.status == 4
    skipped = w.read_window(tmp_path, {}, ("classify",), skip_bad=True)
    assert len(skipped.records) == 2 and len(skipped.skipped) == 2
    assert path.read_bytes() == before


def test_a_log_that_shrank_is_refused(tmp_path) -> None:
    path = write_log(tmp_path, lines_of([record(0)]))
    cursor = {path.name: w.Position(path.stat().st_size + 10, 2)}
    with pytest.raises(w.CorruptLogError, match="shorter than when it was last monitored"):
        w.read_window(tmp_path, cursor, ("classify",), skip_bad=False)


@pytest.mark.parametrize(
    ("records", "error", "status", "match"),
    [
        ([{"route": "classify", "text": "a"}], w.MissingColumnError, 5, "no 'prediction_id'"),
        ([record(0, spam_probability=None)] * 2, w.NullColumnError, 6, "'spam_probability' is"),
    ],
)  # fmt: skip
def test_missing_and_all_null_fields_are_errors(records, error, status, match) -> None:
    with pytest.raises(error, match=match) as caught:
        w.check_fields(pd.DataFrame(records), SPAM.record_fields, Path("log"))
    assert caught.value.status == status


def test_records_with_some_nulls_are_left_out() -> None:
    frame = pd.DataFrame([record(0), record(1, text=None)])
    assert w.check_fields(frame, SPAM.record_fields, Path("log"))["text"].tolist() == ["text 0"]


def test_distinct_exit_statuses() -> None:
    errors = [w.MonitorError, w.EmptyWindowError, w.CorruptLogError, w.MissingColumnError,
              w.NullColumnError, w.ReferenceMismatchError]  # fmt: skip
    assert len({e.status for e in errors}) == len(errors)
    assert 0 not in {e.status for e in errors}


def test_a_reference_without_a_current_column_is_a_mismatch(tmp_path) -> None:
    frame = pd.DataFrame({"text_length": [1], "word_count": [1], "digit_share": [0.0],
                          "spam_probability": [0.1], "label": ["ham"]})  # fmt: skip
    ref.write(tmp_path, frame, {"vocabulary": []})
    with pytest.raises(w.ReferenceMismatchError, match=r"missing column\(s\) \['oov_rate'\]"):
        load_reference(specs()["spam"], tmp_path)
    with pytest.raises(w.MonitorError, match="no reference"):
        load_reference(specs()["spam"], tmp_path / "none")


def test_the_latest_feedback_label_wins_and_bad_lines_are_skipped(tmp_path) -> None:
    write_log(tmp_path, [json.dumps({"prediction_id": "a", "label": "ham"}) + "\n", "{bad\n",
                         json.dumps({"prediction_id": "a", "label": "spam"}) + "\n"])  # fmt: skip
    assert w.read_feedback(tmp_path).to_dict() == {"a": "spam"}


def test_spam_features() -> None:
    frame = text_features(["Hello hello 123", ""], frozenset({"hello"}))
    assert frame.loc[0].to_dict() == pytest.approx(
        {"text_length": 15, "word_count": 3, "digit_share": 3 / 15, "oov_rate": 1 / 3}
    )
    assert frame.loc[1].to_dict() == {"text_length": 0, "word_count": 0, "digit_share": 0.0,
                                      "oov_rate": 0.0}  # fmt: skip


def test_recommend_served_measures() -> None:
    frame = served_measures([[1, 2], [3]], {1: 0.5, 2: 0.1}, {1: 1990.0, 3: 1998.0})
    assert frame["served_popularity"].tolist() == pytest.approx([0.3, 0.0])
    assert frame["served_year"].tolist() == [1990.0, 1998.0]
    assert frame["item_ids"].tolist() == ["1 2", "3"]


def test_anomaly_session_features_count_unknown_events() -> None:
    frame = session_features([["E1", "E2", "E9"], []], ["E0", "E1", "E2"], ["E2"])
    assert frame.loc[0].to_dict() == {"n_events": 3, "unknown_rate": 1 / 3, "E2": 1}
    assert frame.loc[1].to_dict() == {"n_events": 0, "unknown_rate": 0.0, "E2": 0}


def test_quality_uses_only_the_labelled_rows() -> None:
    target = pd.Series(["spam", None, "ham", "spam"])
    predicted = pd.Series(["spam", "spam", "spam", "ham"])
    assert quality(target, predicted, "spam", "precision") == pytest.approx(0.5)
    assert quality(target, predicted, "spam", "recall") == pytest.approx(0.5)
    assert quality(target, predicted, "spam", "accuracy") == pytest.approx(1 / 3)


def snapshot(share: float, drifts: dict[str, float]) -> dict:
    metrics = [{"config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 0, "share": share}}]  # fmt: skip
    metrics += [{"config": {"type": "evidently:metric_v2:ValueDrift", "column": c}, "value": v}
                for c, v in drifts.items()]  # fmt: skip
    return {"metrics": metrics}


@pytest.mark.parametrize(
    ("share", "drifts", "verdict", "reason"),
    [
        (0.0, {"text_length": 0.01, "spam_probability": 0.02}, "no_drift", None),
        (0.2, {"text_length": 0.3, "spam_probability": 0.02}, "no_drift", "below the threshold"),
        (0.2, {"text_length": 0.01, "spam_probability": 0.4}, "drift", "predictions drifted"),
        (0.6, {"text_length": 0.3, "oov_rate": 0.5}, "drift", "columns drifted"),
    ],
)
def test_judge(share, drifts, verdict, reason) -> None:
    judgement = judge("spam", snapshot(share, drifts), SPAM, PARAMS)
    assert judgement.verdict == verdict
    assert (reason is None) == (not judgement.reasons)
    if reason:
        assert reason in judgement.reasons[0]


def test_sample_keeps_small_frames_and_draws_large_ones() -> None:
    frame = pd.DataFrame({"x": np.arange(10)})
    assert sample(frame, 20) is frame
    assert len(sample(frame, 4)) == 4


@pytest.mark.parametrize(
    ("stamps", "latest"),
    [
        (["2026-11-21T10:00:00.000+00:00", "2026-11-21T11:30:00.500+00:00", None],
         dt.datetime(2026, 11, 21, 11, 30, 0, 500000)),
        (pd.to_datetime(["2026-11-21T09:00:00Z"]), dt.datetime(2026, 11, 21, 9)),
    ],
)  # fmt: skip
def test_a_window_is_dated_by_its_last_request(stamps, latest) -> None:
    assert last_time(pd.Series(stamps)) == latest


def test_a_window_without_timestamps_is_dated_now() -> None:
    assert abs(last_time(None) - dt.datetime.now(dt.UTC).replace(tzinfo=None)).seconds < 5
