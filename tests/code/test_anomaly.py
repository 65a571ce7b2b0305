"""The anomaly project's pure functions: simulator, parsing, sessions, count vectors, traces."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from projects.anomaly.model import count_vectors
from projects.anomaly.parsing import LINE, UNKNOWN, Templates, content_of, mine, sessions
from projects.anomaly.simulator import simulate
from projects.anomaly.traces import parse_features, read_traces
from projects.core import paths
from projects.core.cli import StageError

LOGHUB = paths.ROOT.parent / "shared" / "reference" / "loghub"


def test_the_simulator_is_deterministic_and_writes_hdfs_v1_lines() -> None:
    lines, labels = simulate(200, 0.2, seed=7)
    again_lines, again_labels = simulate(200, 0.2, seed=7)
    assert lines == again_lines
    pd.testing.assert_frame_equal(labels, again_labels)
    assert simulate(200, 0.2, seed=8)[0] != lines
    assert all(LINE.match(line) for line in lines)
    grouped, stats = sessions(lines, mine(map(content_of, lines), 0.5, 4))
    assert set(grouped) == set(labels.BlockId)  # every block is labelled, every label is a block
    assert stats.malformed == 0 and stats.without_block == 0
    assert set(labels.Label) == {"Normal", "Anomaly"}
    assert {"cut_short", "write_exception"} <= set(labels.Kind)


@pytest.mark.skipif(not LOGHUB.exists(), reason="the Loghub reference samples are not beside us")
def test_mined_templates_match_loghubs_on_real_hdfs_lines() -> None:
    lines = (LOGHUB / "HDFS_2k.log").read_text().splitlines()
    truth = pd.read_csv(LOGHUB / "HDFS_2k.log_structured.csv")
    templates = mine(map(content_of, lines), 0.5, 4)
    ours = pd.Series([templates.match(content_of(line)) for line in lines])
    assert UNKNOWN not in set(ours)
    # one of our events per Loghub template, and one Loghub template per event of ours
    pairs = pd.DataFrame({"loghub": truth.EventId, "ours": ours})
    assert pairs.groupby("loghub")["ours"].nunique().max() == 1
    assert pairs.groupby("ours")["loghub"].nunique().max() == 1


def test_sessions_group_by_block_and_count_what_does_not_parse() -> None:
    templates = Templates(("Receiving block <BLK> src: <IP> dest: <IP>", "Deleting <BLK> <*>"))
    head = "081109 203615 148 INFO dfs.DataNode:"
    lines = [
        f"{head} Receiving block blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:50010",
        f"{head} Deleting blk_-2 now",
        f"{head} BLOCK* ask 10.0.0.1:50010 to delete  blk_1 blk_3",
        f"{head} a line that names no block",
        "this is not an HDFS line",
    ]
    grouped, stats = sessions(lines, templates)
    assert grouped == {"blk_1": ["E1", UNKNOWN], "blk_-2": ["E2"], "blk_3": [UNKNOWN]}
    assert (stats.lines, stats.malformed, stats.without_block, stats.unknown) == (5, 1, 1, 2)
    assert stats.parse_rate == pytest.approx(2 / 4)


def test_templates_round_trip_and_the_most_specific_wins() -> None:
    templates = Templates(("Served <BLK> to <*>", "Served <BLK> to <IP>"))
    assert templates.match("Served blk_9 to /10.1.2.3") == "E2"
    assert templates.match("Served blk_9 to nobody") == "E1"
    assert Templates.from_json(templates.to_json()) == templates


def test_count_vectors_put_unknown_events_in_the_first_column() -> None:
    counts = count_vectors([["E1", "E1", "E9"], []], [UNKNOWN, "E1", "E2"])
    assert counts.tolist() == [[1, 2, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    ("text", "events"),
    [("[E5,E22,E5]", ["E5", "E22", "E5"]), ("[ E1 , E2 ]", ["E1", "E2"]), ("[]", [])],
)
def test_trace_features_parse(text: str, events: list[str]) -> None:
    assert parse_features(text) == events


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('blk_1,Success,"[E1,E2]"\nblk_2,Fail,"E1 E2"\n', "line 3: Features"),
        ('blk_1,Maybe,"[E1]"\n', "line 2: Label must be Success or Fail"),
        ("blk_1,Success,[E1,E2]\n", "more fields than the header"),
        ("", "no sessions"),
    ],
)
def test_bad_traces_name_the_problem_and_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "Event_traces.csv"
    path.write_text("BlockId,Label,Features\n" + body)
    with pytest.raises(StageError, match=message):
        read_traces(path)
