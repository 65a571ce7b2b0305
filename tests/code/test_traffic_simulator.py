"""The access-log simulator: deterministic, readable by our reader, fully labelled."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from projects.traffic import logformat as lf
from projects.traffic import simulator as sim
from projects.traffic.clients import sessions


@pytest.fixture(scope="module")
def small() -> tuple[list[str], pd.DataFrame]:
    return sim.simulate(clients=250, seed=3)


def test_same_seed_same_log() -> None:
    lines, labels = sim.simulate(clients=40, seed=3)
    again, labels_again = sim.simulate(clients=40, seed=3)
    assert lines == again
    pd.testing.assert_frame_equal(labels, labels_again)
    assert sim.simulate(clients=40, seed=4)[0] != lines


def test_every_line_parses_and_is_in_time_order(small: tuple[list[str], pd.DataFrame]) -> None:
    lines, _ = small
    parsed = lf.read_lines(lines, "access.log")
    assert parsed.bad == []
    assert len(parsed.frame) == parsed.total == len(lines)
    assert parsed.frame["time"].is_monotonic_increasing
    span = parsed.frame["time"].iloc[-1] - parsed.frame["time"].iloc[0]
    assert 12 * 3600 < span < 40 * 3600


def test_labels_cover_every_line(small: tuple[list[str], pd.DataFrame]) -> None:
    lines, labels = small
    frame = lf.read_lines(lines).frame
    assert list(labels.columns) == [
        "line",
        "client_ip",
        "user_agent",
        "client_kind",
        "request_kind",
        "is_attack",
    ]
    assert labels["line"].tolist() == list(range(1, len(lines) + 1))
    assert labels["client_ip"].tolist() == frame["client_ip"].tolist()
    assert labels["user_agent"].tolist() == frame["user_agent"].tolist()
    assert (labels["is_attack"] == (labels["request_kind"] != "normal").astype(int)).all()


def test_every_kind_is_present(small: tuple[list[str], pd.DataFrame]) -> None:
    _, labels = small
    assert set(labels["client_kind"]) == set(sim.NORMAL_KINDS) | set(sim.ABUSE_KINDS)
    _, payloads = sim.simulate(clients=60, seed=3, only="payload")
    kinds = set(labels["request_kind"]) | set(payloads["request_kind"])
    assert kinds == set(sim.REQUEST_KINDS)
    normal_clients = labels["client_kind"].isin(sim.NORMAL_KINDS)
    assert (labels.loc[normal_clients, "is_attack"] == 0).all()


def test_one_kind_alone() -> None:
    _, labels = sim.simulate(clients=30, seed=3, only="dashboard")
    assert set(labels["client_kind"]) == {"dashboard"}
    assert labels.groupby(["client_ip", "user_agent"]).ngroups == 30
    with pytest.raises(ValueError, match="unknown kind 'robot'"):
        sim.simulate(clients=30, seed=3, only="robot")


def test_every_visit_of_a_payload_client_carries_payloads() -> None:
    """A visit without one would be an ordinary session labelled abusive."""
    lines, labels = sim.simulate(clients=80, seed=5, only="payload")
    frame = lf.read_lines(lines).frame
    visits = pd.Series(labels["is_attack"].to_numpy()).groupby(sessions(frame)).sum()
    assert len(visits) > 80  # some clients came back
    assert (visits > 0).all()


def test_a_client_has_one_kind(small: tuple[list[str], pd.DataFrame]) -> None:
    _, labels = small
    kinds = labels.groupby(["client_ip", "user_agent"])["client_kind"].nunique()
    assert (kinds == 1).all()


def test_payloads_sit_in_query_form_json_and_path(small: tuple[list[str], pd.DataFrame]) -> None:
    lines, labels = small
    frame = lf.read_lines(lines).frame
    payloads = frame[labels["request_kind"].isin(sim.PAYLOAD_KINDS).to_numpy()]
    json_body = payloads["body"].str.startswith("{")
    form_body = (payloads["body"] != "") & ~json_body
    assert json_body.sum() > 10 and form_body.sum() > 10 and (payloads["query"] != "").sum() > 10
    templates = {
        lf.endpoint(m, p) for m, p in zip(payloads["method"], payloads["path"], strict=True)
    }
    assert len(templates) > 15


def test_hard_negatives_carry_tricky_but_normal_values(
    small: tuple[list[str], pd.DataFrame],
) -> None:
    lines, labels = small
    frame = lf.read_lines(lines).frame[(labels["request_kind"] == "normal").to_numpy()]
    values = [
        v
        for q, b in zip(frame["query"], frame["body"], strict=True)
        for _, v in lf.params("GET", "/", q, b)
    ]
    assert any("'" in v for v in values) and any("<3" in v for v in values)
    assert max(len(v) for v in values) > 500  # long reviews


def test_write_and_params(tmp_path: Path) -> None:
    params = sim.SimulateParams(clients=30, seed=1)
    started = time.perf_counter()
    log_path, labels_path = sim.write(tmp_path / "raw", **params.model_dump())
    assert time.perf_counter() - started < 10
    labels = pd.read_csv(labels_path, keep_default_na=False)
    parsed = lf.read_file(log_path)
    assert len(parsed.frame) == len(labels) > 500
    assert parsed.bad == []
