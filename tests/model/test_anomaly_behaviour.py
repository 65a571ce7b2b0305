"""Behaviour of the log anomaly detector trained on the generated HDFS data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from projects.anomaly import config
from projects.anomaly.data import (
    LABELS_FILE,
    LOG_FILE,
    events_of,
    labels_of,
    read_labels,
    read_lines,
)
from projects.anomaly.model import Detector, supervised_input
from projects.anomaly.parsing import UNKNOWN
from projects.anomaly.prepare import prepare
from projects.anomaly.simulator import simulate
from projects.anomaly.train import train


@pytest.fixture(scope="module")
def trained():
    """The detector, the supervised model, the test sessions and the raw lines."""
    path = config.RAW_DIR / LOG_FILE
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup` (make test does) first")
    params = config.load()
    lines = read_lines(path)
    frames, templates, _ = prepare(lines, read_labels(config.RAW_DIR / LABELS_FILE), params.prepare)
    detector, supervised = train(frames["train"], frames["validation"], templates, params.train)
    return detector, supervised, frames["test"], lines


def _event(detector: Detector, text: str) -> str:
    return detector.templates.match(text)


def test_a_write_exception_scores_above_the_threshold_and_a_normal_session_below(trained) -> None:
    detector, _, test, _ = trained
    normal = test[test.Label == "Normal"].Events.iloc[0].split()
    failing = [
        *normal,
        _event(
            detector,
            "writeBlock blk_1 received exception java.io.IOException: Could not read from stream",
        ),
    ]
    assert UNKNOWN not in failing
    low, high = detector.scores([normal, failing])
    assert low < detector.threshold <= high


def test_unknown_events_are_counted_and_flagged(trained) -> None:
    detector, _, test, _ = trained
    normal = test[test.Label == "Normal"].Events.iloc[0].split()
    scored = detector.score_sessions(["blk_1", "blk_2"], [normal, [*normal, "E999"]])
    assert [s.unknown_events for s in scored] == [0, 1]
    assert not scored[0].is_anomaly and scored[1].is_anomaly


def test_explanations_share_out_the_score_and_name_the_failing_event(trained) -> None:
    detector, _, test, _ = trained
    normal = test[test.Label == "Normal"].Events.iloc[0].split()
    failure = "writeBlock blk_1 received exception java.io.IOException: Could not read from stream"
    event = _event(detector, failure)
    shares = detector.explain([*normal, event], top=len(detector.vocabulary))
    assert sum(s.share for s in shares) == pytest.approx(1, abs=1e-4)
    assert shares[0].event == event and "exception" in shares[0].template
    assert shares[0].count == 1


def test_raw_lines_are_scored_like_their_sessions(trained) -> None:
    detector, _, test, lines = trained
    anomalous = test[test.Label == "Anomaly"].iloc[:3]
    blocks = set(anomalous.BlockId)
    own = [line for line in lines if any(block in line for block in blocks)]
    by_block = {s.block_id: s for s in detector.score_lines(own)}
    expected = detector.scores(events_of(anomalous))
    for block, score in zip(anomalous.BlockId, expected, strict=True):
        assert by_block[block].score == pytest.approx(score)


def test_most_test_anomalies_are_caught_and_few_normals_flagged(trained) -> None:
    detector, supervised, test, _ = trained
    flagged = detector.scores(events_of(test)) >= detector.threshold
    is_anomaly = labels_of(test)
    assert flagged[is_anomaly].mean() > 0.7 and flagged[~is_anomaly].mean() < 0.01
    assert (supervised.predict(supervised_input(events_of(test))) == is_anomaly).mean() > 0.99


def test_a_saved_detector_loads_with_the_same_scores(trained, tmp_path) -> None:
    detector, _, test, _ = trained
    detector.save(tmp_path / "detector.npz")
    loaded = Detector.load(tmp_path / "detector.npz")
    events = events_of(test.head(50))
    np.testing.assert_allclose(loaded.scores(events), detector.scores(events))
    assert loaded.threshold == detector.threshold
    assert loaded.templates == detector.templates


def test_evaluate_traces_prints_both_models_scores_as_its_last_line(tmp_path) -> None:
    import json
    import subprocess
    import sys

    from projects.anomaly.data import write_frame
    from projects.anomaly.traces import to_traces

    lines, labels = simulate(1500, 0.1, seed=3)
    params = config.load()
    frames, _, _ = prepare(lines, labels[["BlockId", "Label"]], params.prepare)
    path = tmp_path / "Event_traces.csv"
    write_frame(to_traces(pd.concat(frames.values())), path)
    done = subprocess.run(
        [sys.executable, "-m", "projects.anomaly.traces", "--traces", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sessions"] == 1500
    for model in ("unsupervised", "supervised"):
        assert set(result[model]) == {"precision", "recall", "f1"}
        assert result[model]["f1"] > 0.7
