"""Folding labelled production data into the raw data: the pure functions of monitoring.retrain
and of the projects' feedback modules."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.retrain import (
    TRUTH,
    append_lines,
    data_version,
    decision_summary,
    failure_message,
    join,
    retrain,
)
from monitoring.window import parse_lines, read_jsonl
from projects.anomaly.feedback import block_truth, new_labels, new_log_lines
from projects.core.cli import StageError
from projects.spam.data import read_messages, write_messages
from projects.spam.feedback import csv_safe, new_messages

SPAM_LABELS = ("ham", "spam")


def _line(time: str, component: str, content: str) -> str:
    return f"081109 {time} 19 INFO dfs.{component}: {content}"


A, B, C = "blk_1", "blk_-2", "blk_3"
RECEIVED_A = _line(
    "203518", "DataNode$PacketResponder", f"Received block {A} of size 91 from /10.0.0.1"
)
RECEIVED_B = _line(
    "203519", "DataNode$PacketResponder", f"Received block {B} of size 91 from /10.0.0.2"
)
DELETE_AB = _line("203520", "FSNamesystem", f"BLOCK* ask 10.0.0.3:50010 to delete {A} {B}")
DELETE_AC = _line("203521", "FSNamesystem", f"BLOCK* ask 10.0.0.3:50010 to delete {A} {C}")


@pytest.mark.parametrize(
    ("lines", "records", "skipped"),
    [
        (['{"a": 1}', '{"b": 2}'], [{"a": 1}, {"b": 2}], []),
        # a line cut short by a crash, a stray value, a list: skipped, each named
        (
            ['{"a": 1}', '{"a": ', "42", "[1, 2]", "not json"],
            [{"a": 1}],
            ["f:2", "f:3", "f:4", "f:5"],
        ),
        (["", "  \n", '{"a": 1}\n'], [{"a": 1}], []),  # blank lines are not counted
        (["[" * 100_000], [], ["f:1"]),  # nested too deep for the parser
    ],
)
def test_parse_lines_keeps_objects_and_names_the_other_lines(
    lines: list[str], records: list[dict], skipped: list[str]
) -> None:
    parsed, bad = parse_lines((f"f:{i}", line) for i, line in enumerate(lines, start=1))
    assert [record for _, record in parsed] == records
    assert [place.split(": ", 1)[0] for place in bad] == skipped


CUT = "the record ends before its closing brace"


def test_read_jsonl_reads_every_file_in_date_order_and_leaves_them_alone(tmp_path) -> None:
    (tmp_path / "2025-01-02.jsonl").write_text('{"n": 3}\n{"n": \n')
    (tmp_path / "2025-01-01.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    (tmp_path / "notes.txt").write_text("not a log\n")
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    records, skipped = read_jsonl(tmp_path)
    assert [record["n"] for _, record in records] == [1, 2, 3]
    assert records[2][0] == f"{tmp_path / '2025-01-02.jsonl'}:1"
    assert skipped == [
        f"{tmp_path / '2025-01-02.jsonl'}:2: truncated: the record ends before its closing brace"
    ]
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert read_jsonl(tmp_path / "missing") == ([], [])


def _located(*records: dict) -> list[tuple[str, dict]]:
    return [(f"log:{i}", record) for i, record in enumerate(records, start=1)]


def test_join_labels_logged_predictions_with_the_last_feedback() -> None:
    requests = _located(
        {"prediction_id": "r1-0", "text": "one", "label": "ham"},
        {"prediction_id": "r1-1", "text": "two", "label": "ham"},
        {"text": "an old record without an id"},
        {"prediction_id": "r2-0", "text": "three", "label": "spam"},
    )
    feedback = _located(
        {"prediction_id": "r2-0", "label": "ham"},
        {"prediction_id": "r1-0", "label": "ham"},
        {"prediction_id": "r1-0", "label": "spam"},  # corrects the one before
        {"prediction_id": "r1-1", "label": "Spam"},  # not a label of the project
        {"label": "spam"},
        {"prediction_id": ["r1-1"], "label": "spam"},
        {"prediction_id": "gone-0", "label": "ham"},  # a prediction no log holds
    )
    joined = join(requests, feedback, SPAM_LABELS)
    assert list(joined.labelled["prediction_id"]) == ["r1-0", "r2-0"]  # request-log order
    assert list(joined.labelled[TRUTH]) == ["spam", "ham"]
    assert list(joined.labelled["label"]) == ["ham", "spam"]  # the model's answer, kept apart
    assert joined.bad_feedback == ["log:4", "log:5", "log:6"]
    assert joined.unmatched == 1


def test_join_of_nothing_is_empty() -> None:
    joined = join([], _located({"prediction_id": "x", "label": "ham"}), SPAM_LABELS)
    assert joined.labelled.empty and joined.unmatched == 1


@pytest.mark.parametrize(
    "text",
    ["plain", "two\nlines", "crlf\r\nline", "lone\rreturn", "ends\r", "nul\x00byte", 'a "quote", x',
     "NA", " spaced ", "é😀\ttab", "\u2028separator"],
)  # fmt: skip
def test_csv_safe_tells_which_texts_the_raw_csv_gives_back(text: str, tmp_path) -> None:
    messages = pd.DataFrame({"label": ["ham", "spam"], "text": [text, "after"]})
    write_messages(messages, tmp_path / "m.csv")
    try:
        survives = read_messages(tmp_path / "m.csv").equals(messages)
    except pd.errors.ParserError:
        survives = False
    assert csv_safe(text) == survives


def _labelled(texts: list[object], truths: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, TRUTH: truths})


def test_new_messages_leaves_out_known_repeated_and_unwritable_texts() -> None:
    raw = pd.DataFrame({"label": ["ham", "spam"], "text": ["hello", "WIN now"]})
    labelled = _labelled(
        ["WIN now", "new one", "new two", "new one", None, "bad\rtext", "hello "],
        ["ham", "ham", "spam", "spam", "ham", "spam", "ham"],
    )
    added = new_messages(raw, labelled)
    # a text labelled twice takes its latest label; "hello " is not "hello"
    assert list(added.itertuples(index=False, name=None)) == [
        ("spam", "new two"),
        ("spam", "new one"),
        ("ham", "hello "),
    ]
    assert list(added.columns) == ["label", "text"]


def test_new_messages_of_nothing_labelled_is_an_empty_frame_with_the_columns() -> None:
    added = new_messages(pd.DataFrame({"label": [], "text": []}), pd.DataFrame())
    assert added.empty and list(added.columns) == ["label", "text"]


def test_block_truth_keeps_the_latest_label_of_a_block() -> None:
    labelled = pd.DataFrame({"block_id": [A, B, A, None], TRUTH: ["Normal"] * 2 + ["Anomaly"] * 2})
    assert block_truth(labelled) == {A: "Anomaly", B: "Normal"}
    assert block_truth(pd.DataFrame()) == {}


@pytest.mark.parametrize(
    ("in_log", "truth", "labelled", "expected"),
    [
        # lines of labelled blocks, each once, in cluster-log order, unless the log has them
        ([DELETE_AC], {A: "Anomaly", B: "Normal"}, set(), [RECEIVED_A, RECEIVED_B, DELETE_AB]),
        # a line naming a block nobody labelled would leave that block without a label
        ([DELETE_AC], {A: "Anomaly"}, set(), [RECEIVED_A]),
        ([DELETE_AC], {A: "Anomaly"}, {B}, [RECEIVED_A, DELETE_AB]),
        ([], {C: "Normal"}, {A}, [DELETE_AC]),
        ([], {}, {A, B, C}, []),
    ],
)
def test_new_log_lines(
    in_log: list[str], truth: dict[str, str], labelled: set[str], expected: list[str]
) -> None:
    cluster = [
        RECEIVED_A,
        "not an HDFS line blk_1",
        RECEIVED_B,
        RECEIVED_A,
        DELETE_AB,
        DELETE_AC,
        "",
    ]
    assert new_log_lines(in_log, cluster, truth, labelled) == expected


def test_new_labels_adds_only_unlabelled_blocks_the_new_lines_name() -> None:
    labels = pd.DataFrame({"BlockId": [A], "Label": ["Normal"]})
    truth = {A: "Anomaly", B: "Anomaly", C: "Normal"}
    added = new_labels(labels, truth, [RECEIVED_A, DELETE_AB, RECEIVED_B])
    # A keeps its label from the file; C has no line, so no session to label
    assert list(added.itertuples(index=False, name=None)) == [(B, "Anomaly")]
    assert new_labels(labels, truth, []).empty


@pytest.mark.parametrize(("before", "after"), [("a\nb\n", "a\nb\nc\nd\n"), ("a\nb", "a\nb\nc\nd\n"),
                                               ("", "c\nd\n")])  # fmt: skip
def test_append_lines_keeps_the_file_and_adds_whole_lines(
    before: str, after: str, tmp_path
) -> None:
    path = tmp_path / "HDFS.log"
    path.write_text(before)
    append_lines(path, ["c", "d"])
    assert path.read_text() == after
    append_lines(path, [])
    assert path.read_text() == after


VALIDATE_FAILED = """\
Running stage 'spam-prepare':
> python -m projects.spam.prepare --raw-dir data/raw/spam --out-dir data/prepared/spam
INFO __main__: split 6574 messages: 4601 train, 1973 test
Running stage 'spam-validate':
> python -m projects.spam.validate --raw-dir data/raw/spam --prepared-dir data/prepared/spam
error: data validation failed:
  data/raw/spam/sms_spam.csv: is_spam: expect_column_mean_to_be_between {} -> 0.27
  data/prepared/spam/train.csv: is_spam: expect_column_mean_to_be_between {} -> 0.27
ERROR: failed to reproduce 'spam-validate': failed to run: python -m projects.spam.validate, \
exited with 1
"""
CRASHED = """\
Running stage 'spam-train':
Traceback (most recent call last):
ZeroDivisionError: division by zero
ERROR: failed to reproduce 'spam-train': failed to run: python -m projects.spam.train, exited \
with 1
"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (VALIDATE_FAILED, "spam-validate failed: data validation failed:\n  data/raw/spam/sms_spam"
                          ".csv: is_spam: expect_column_mean_to_be_between {} -> 0.27\n  data/pre"
                          "pared/spam/train.csv: is_spam: expect_column_mean_to_be_between {} -> "
                          "0.27"),
        (CRASHED, "spam-train failed: ERROR: failed to reproduce 'spam-train': failed to run: "
                  "python -m projects.spam.train, exited with 1"),
        ("ERROR: unexpected error - dvc.yaml is broken\n", "ERROR: unexpected error - dvc.yaml "
                                                          "is broken"),
        ("", "see the output above"),
    ],
)  # fmt: skip
def test_failure_message_names_the_stage_and_its_message(output: str, expected: str) -> None:
    assert failure_message(output.splitlines()) == expected


def test_data_version_is_the_recorded_md5() -> None:
    recorded = "outs:\n- path: data/raw\n  md5: 79d9.dir\n  size: 1\n  nfiles: 6\n  hash: md5\n"
    assert data_version(recorded) == "79d9.dir"
    assert data_version("outs:\n- path: data/raw\n") == "(none)"


def _report(promoted: bool) -> dict:
    return {
        "model": "spam-classifier", "metric": "mcc", "candidate_version": "3",
        "candidate_score": 0.95, "champion_version": "1", "champion_score": 0.94,
        "promoted": promoted, "reason": "mcc 0.9500 beats champion v1's 0.9400",
    }  # fmt: skip


def test_decision_summary_says_where_the_new_version_stands() -> None:
    assert decision_summary(_report(True)) == (
        "spam-classifier v3 is @champion: mcc 0.9500 beats champion v1's 0.9400"
    )
    summary = decision_summary(_report(False) | {"reason": "mcc 0.9 does not beat champion v1"})
    assert summary.startswith("spam-classifier v3 is @challenger, @champion stays v1: ")


def test_recommend_has_no_ground_truth_to_fold() -> None:
    with pytest.raises(StageError, match="no ground truth arrives for recommendations"):
        retrain("recommend")
